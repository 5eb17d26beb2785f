"""JSON-safe structures from what graphs produce, shaped like the LangGraph server's output.

LangChain messages become their `model_dump()` dict (type, content, id, tool_calls,
usage_metadata, ...), `Interrupt` becomes `{"value", "id"}`, dataclasses and pydantic models their
fields. Nothing here raises: an object it cannot describe becomes its `repr`.
"""

import base64
import dataclasses
import datetime
import enum
import logging
import math
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from uuid import UUID

from langgraph.types import Command, Interrupt, Send

logger = logging.getLogger(__name__)

_PRIMITIVES = (str, int, bool, type(None))


def to_jsonable(obj: Any) -> Any:
    """`obj` as dicts, lists, strings, numbers, booleans and None (never raises)."""
    kind = type(obj)
    if kind in _PRIMITIVES:
        return obj
    if kind is dict:
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if kind is list:
        return [to_jsonable(v) for v in obj]
    try:
        return _convert(obj)
    except Exception:  # a broken __repr__ or model_dump must not break a stream
        logger.debug("cannot serialise %s", kind, exc_info=True)
        return _safe_repr(obj)


def _convert(obj: Any) -> Any:
    if isinstance(obj, float):
        # JSON has no NaN or infinity; the LangGraph server (orjson) sends null too.
        return obj if math.isfinite(obj) else None
    if isinstance(obj, _PRIMITIVES):
        return obj
    if isinstance(obj, Interrupt):
        return {"value": to_jsonable(obj.value), "id": obj.id}
    if isinstance(obj, Send):
        return {"node": obj.node, "arg": to_jsonable(obj.arg)}
    if isinstance(obj, Command):
        fields = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
        return {name: to_jsonable(value) for name, value in fields if value not in (None, ())}
    model_dump = getattr(obj, "model_dump", None)
    if model_dump is not None and not isinstance(obj, type):
        return to_jsonable(model_dump())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, UUID):
        return str(obj)
    if isinstance(obj, datetime.datetime | datetime.date | datetime.time):
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        return obj.total_seconds()
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
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
