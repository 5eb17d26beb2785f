"""JSON-safe structures from what graphs produce, shaped like the LangGraph server's output.

LangChain messages become their `model_dump()` dict (type, content, id, tool_calls,
usage_metadata, ...), `Interrupt` becomes `{"value", "id"}`, dataclasses and pydantic models their
fields. Nothing here raises: an object it cannot describe becomes its `repr`.
"""

import base64
import dataclasses
import datetime
import enum
import json
import logging
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from uuid import UUID

import orjson
from langgraph.types import Command, Interrupt, Send

from deerflow_site.dbcompat import storable_json

logger = logging.getLogger(__name__)

_SURROGATE = re.compile("[\ud800-\udfff]")

_PRIMITIVES = (str, int, bool, type(None))
#: orjson handles str, int, float, bool, None, dict, list, tuple, enums and UUIDs (and their
#: subclasses) itself; dataclasses and datetimes come to `_default`, to be shaped as below.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)


def dumps(obj: Any) -> str:
    """`obj` as one line of compact JSON text, non-ASCII kept, always UTF-8 text (never
    raises).

    orjson does the work, calling `_shallow` for what it does not know. What orjson refuses
    (an integer beyond 64 bits, a string with a lone surrogate, a key that is no scalar) goes
    through `to_jsonable` and the standard library instead; a lone surrogate (what Python's
    `surrogateescape` makes of bytes that are not UTF-8: a file name, a command's output)
    becomes U+FFFD, since no UTF-8 text holds it (an SSE frame with it could not be sent).
    """
    try:
        return orjson.dumps(obj, default=_default, option=_ORJSON_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        try:
            text = json.dumps(to_jsonable(obj), separators=(",", ":"), ensure_ascii=False)
        except RecursionError:  # nested past Python's recursion limit: its depth capped
            text = json.dumps(storable_json(obj), separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


def to_jsonable(obj: Any) -> Any:
    """`obj` as dicts, lists, strings, numbers, booleans and None (never raises)."""
    kind = type(obj)
    if kind in _PRIMITIVES:
        return obj
    if kind is float:
        # JSON has no NaN or infinity; the LangGraph server (orjson) sends null too.
        return obj if math.isfinite(obj) else None
    if kind is dict:
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if kind is list:
        return [to_jsonable(v) for v in obj]
    return to_jsonable(_default(obj))


def _default(obj: Any) -> Any:
    try:
        return _shallow(obj)
    except Exception:  # a broken __repr__ or model_dump must not break a stream
        logger.debug("cannot serialise %s", type(obj), exc_info=True)
        return _safe_repr(obj)


def _shallow(obj: Any) -> Any:
    """One level of `obj` in simpler terms: a str, int, float, None, dict or list of exactly
    those types, or an enum's value; what it contains may still need converting."""
    if isinstance(obj, float):
        return float.__float__(obj)
    if isinstance(obj, Interrupt):
        return {"value": obj.value, "id": obj.id}
    if isinstance(obj, Send):
        return {"node": obj.node, "arg": obj.arg}
    if isinstance(obj, Command):
        fields = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
        return {name: value for name, value in fields if value not in (None, ())}
    model_dump = getattr(obj, "model_dump", None)
    if model_dump is not None and not isinstance(obj, type):
        return dict(model_dump())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, int):
        return int.__int__(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, UUID):
        return str(obj)
    if isinstance(obj, datetime.datetime | datetime.date | datetime.time):
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        return obj.total_seconds()
    if isinstance(obj, Decimal):
        return float(obj) if obj.is_finite() else None
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    return _safe_repr(obj)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(to_jsonable(key))


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:
        return f"<{type(obj).__name__}>"
