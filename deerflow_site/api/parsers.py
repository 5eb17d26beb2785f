"""JSON request bodies, parsed within bounds: nesting depth, integer range, finite numbers,
one value per key.

Every JSON a client sends goes through `loads`: DRF's views through `JSONParser` (the default
parser class), the async views through `async_views.json_body`. Python's own decoder recurses
once per nesting level, so a body nested about a thousand deep would raise RecursionError; the
depth is checked before decoding, by a scan that skips strings.

A key given twice in one object (`{"input": 1, "input": 2}`) is refused rather than decoded as
its last value, as Python's and most decoders do (some keep the first, or fail): a body a proxy,
a gateway or a log reads one way must not act another way here. It costs about 0.3 µs per
object: the README's run create body, six objects, 3.6 µs -> 5.2 (`bench/json_keys.py`).
"""

import json
import math
import re
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

#: Integers in a body stay within a signed 64-bit integer (what the databases store).
MAX_INTEGER = 2**63 - 1

# A \u0000 escape (not an escaped backslash followed by "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# A \uD800-\uDFFF escape: half of a UTF-16 surrogate pair, which may stand alone.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

# A JSON string (skipped whole, escapes included) or one bracket.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def loads(data: bytes | str) -> Any:
    """The JSON value of `data` (UTF-8 when bytes).

    Raises ValueError, with a message meant for the client, for malformed JSON, nesting deeper
    than settings.MAX_JSON_DEPTH (objects and arrays), a key given twice in one object, an
    integer beyond ±MAX_INTEGER, a number too large for a float, NaN / Infinity, the NUL
    character in a string (PostgreSQL's jsonb and text cannot hold it), or a lone UTF-16
    surrogate escape (`"\\ud83d"`, half of an emoji: no UTF-8 text, so neither a database nor a
    response could hold it).
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    check_depth(text, settings.MAX_JSON_DEPTH)
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValueError("the NUL character (\\u0000) is not allowed in JSON strings")
    if text.startswith("\ufeff"):  # as json.loads says (the decoder alone does not look)
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    value = _DECODER.decode(text)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    """ValueError when a string of `value` (keys included) holds a surrogate that no pair
    decoded into one character (UTF-8 has no encoding for it)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair) is not allowed"
        ) from None


def check_depth(text: str, max_depth: int) -> None:
    """Raise ValueError if JSON `text` nests objects and arrays deeper than `max_depth`."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # fewer opening brackets (in strings or not) than levels: no scan needed
    depth = 0
    for match in _STRUCTURE.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
        elif char in "]}":
            depth -= 1


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_INTEGER:
        raise ValueError(f"integer {text[:24]}... beyond the 64-bit range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} too large")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _object_of_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:  # named ASCII-escaped (a key may hold a lone surrogate), cut short
                raise ValueError(f"duplicate key {json.dumps(key)[:60]} in a JSON object")
            seen.add(key)
    return obj


#: Made once: `json.loads` with hooks builds a decoder (and its scanner) per call.
_DECODER = json.JSONDecoder(
    parse_int=_bounded_int,
    parse_float=_finite_float,
    parse_constant=_refuse_constant,
    object_pairs_hook=_object_of_unique_keys,
)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser over `loads`: the same bounds for every DRF view."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return loads(stream.read().decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from None
