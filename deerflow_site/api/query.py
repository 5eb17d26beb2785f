"""Query strings as serializer input, one rule for every endpoint.

- A parameter that takes one value is given once: `?limit=1&limit=500` is a 422 naming `limit`
  (no SDK repeats one; the reference server would silently keep the last).
- A parameter the serializer declares as a list (`select`, `stream_mode`) may repeat: each
  occurrence is one item.
- A boolean is `true`, `false`, `1` or `0`, exactly as the SDKs send them (httpx spells Python's
  booleans `true`/`false`, the JS client sends `"1"`/`"0"` for `wait` and
  `cancel_on_disconnect`), or `True`/`False` (Python's `str(bool)`, as `requests` sends it, which
  the reference server reads too); `yes`, `TRUE` or an empty value is a 422.

Parameters a serializer does not know are passed on as they are (it ignores them and logs each
name once), repeated or not.
"""

import functools
from collections.abc import Collection
from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from deerflow_site.api.serializers import validated
from deerflow_site.errors import Invalid

#: The spellings of a boolean query parameter.
QUERY_BOOLEANS = {"true": True, "1": True, "True": True, "false": False, "0": False, "False": False}
REPEATED = "Given more than once: a parameter that takes one value is sent once."


@functools.cache
def _fields(serializer_class: type[serializers.Serializer]) -> tuple[frozenset, frozenset]:
    """(every field name, the names of list fields) of a query serializer."""
    fields = serializer_class().fields
    lists = {name for name, field in fields.items() if isinstance(field, serializers.ListField)}
    return frozenset(fields), frozenset(lists)


def query_data(
    serializer_class: type[serializers.Serializer],
    query: QueryDict,
    *,
    skip: Collection[str] = (),
) -> dict[str, Any]:
    """`query` as input of `serializer_class`: list fields as lists, other known fields as their
    one value; `skip`ped keys left out (read elsewhere). Invalid (422) naming every known
    one-value parameter that is given more than once."""
    known, lists = _fields(serializer_class)
    data: dict[str, Any] = {}
    repeated: dict[str, list[str]] = {}
    for key in query:
        if key in skip:
            continue
        values = query.getlist(key)
        if key in lists or (len(values) > 1 and key not in known):
            data[key] = values
        elif len(values) > 1:
            repeated[key] = [REPEATED]
        else:
            data[key] = values[0]
    if repeated:
        raise Invalid(repeated)
    return data


def validated_query(
    serializer_class: type[serializers.Serializer],
    query: QueryDict,
    *,
    skip: Collection[str] = (),
) -> dict[str, Any]:
    """The validated data of a query string (`query_data`, then the serializer): 422 naming the
    parameters otherwise."""
    return validated(serializer_class, query_data(serializer_class, query, skip=skip))


def parse_query_boolean(value: Any) -> bool:
    """A boolean query parameter's value (QUERY_BOOLEANS; a Python bool is a default), or
    ValidationError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in QUERY_BOOLEANS:
        return QUERY_BOOLEANS[value]
    raise serializers.ValidationError(
        "Must be true, false, 1 or 0 (or True, False).", code="invalid"
    )


class QueryBooleanField(serializers.BooleanField):
    """A boolean query parameter, spelled as in QUERY_BOOLEANS, nothing else (422)."""

    def to_internal_value(self, data: Any) -> bool:
        return parse_query_boolean(data)
