"""Base request serializer: unknown fields are ignored and logged once; known fields validated."""

import copy
import logging
import math
import re
import threading
from collections import OrderedDict
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deerflow_site.api.ids import parse_uuid, validate_thread_id
from deerflow_site.api.parsers import MAX_INTEGER
from deerflow_site.errors import Invalid

logger = logging.getLogger(__name__)

#: A query parameter's integer: ASCII digits only (Python's digit checks also accept `²`).
INTEGER_PATTERN = re.compile(r"\A-?[0-9]{1,19}\Z")


class UnknownFieldLog:
    """Logs each unknown request field once, remembering the last `size` (serializer, field)
    names only: a client sending ever new names must not grow the process's memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def note(self, serializer: str, field: str) -> None:
        entry = (serializer, field[:MAX_LOGGED_NAME])
        with self._lock:
            if entry in self._seen:
                self._seen.move_to_end(entry)
                return
            self._seen[entry] = None
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
        logger.info("ignoring unknown request field %r in %s", entry[1], serializer)


#: Characters of an unknown field's name that are logged and remembered.
MAX_LOGGED_NAME = 100
unknown_fields = UnknownFieldLog(size=256)


class RequestSerializer(serializers.Serializer):
    """A request body: newer SDKs add fields, so unknown ones are ignored (and logged once)."""

    #: Fields the server knows but does not honour: sending a non-null value is a 422.
    unsupported_fields: tuple[str, ...] = ()

    def get_fields(self) -> dict[str, serializers.Field]:
        # DRF deep-copies every declared field for each request, most of the cost of parsing a
        # small body. Binding only sets names on a field, so a shallow copy of each will do;
        # nested serializers, which keep bound fields of their own, are still deep-copied.
        return {
            name: copy.deepcopy(field)
            if isinstance(field, serializers.BaseSerializer)
            else copy.copy(field)
            for name, field in self._declared_fields.items()
        }

    @classmethod
    def quickly_validated(cls, data: Any) -> dict[str, Any] | None:
        """The validated data of a body that is valid and names known fields only, checked by
        the fields of one serializer made once (bound fields hold no state of a validation):
        only the fields the body names run, where DRF copies and runs every declared field
        per request; a field the body leaves out that has a default gets it, as DRF gives it
        (not validated). None whenever the body is anything else (an unknown or unsupported
        field, a value a field refuses, a required field absent): validate it with a
        serializer then, which answers exactly as it always does.

        Only for serializers whose `validate` reads nothing but the attributes it is given
        and which declare no validators of their own."""
        quick = cls.__dict__.get("_quick")
        if quick is None:
            quick = _QuickValidation(cls)
            cls._quick = quick
        return quick.validated(data)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid"
            )
        name = type(self).__name__
        for key in data.keys() - self.fields.keys():
            unknown_fields.note(name, str(key))
        for key in self.unsupported_fields:
            if data.get(key) is not None:
                raise serializers.ValidationError({key: ["This server does not support it."]})
        return super().to_internal_value(data)


class _QuickValidation:
    """`RequestSerializer.quickly_validated` of one serializer class."""

    def __init__(self, serializer_class: type[RequestSerializer]) -> None:
        self.serializer = serializer_class()
        fields = self.serializer.fields
        self.fields = {
            name: field
            for name, field in fields.items()
            if not field.read_only
            and name not in serializer_class.unsupported_fields
            and not hasattr(self.serializer, f"validate_{name}")
        }
        writable = {name: field for name, field in fields.items() if not field.read_only}
        # Required fields: the body must name them (DRF's 422 otherwise).
        self.needed = frozenset(name for name, field in writable.items() if field.required)
        # Fields with a default: DRF gives the default (`get_default`, not validated) when the
        # body leaves one out.
        self.defaulted = tuple(
            (name, field)
            for name, field in writable.items()
            if field.default is not serializers.empty
        )
        acting = self.needed | {name for name, _ in self.defaulted}
        self.usable = not self.serializer.validators and acting <= self.fields.keys()

    def validated(self, data: Any) -> dict[str, Any] | None:
        if not self.usable or type(data) is not dict or not self.needed <= data.keys():
            return None
        fields = self.fields
        attrs: dict[str, Any] = {}
        try:
            for name, value in data.items():
                attrs[name] = fields[name].run_validation(value)
            for name, field in self.defaulted:
                if name not in attrs:
                    attrs[name] = field.get_default()
            return self.serializer.validate(attrs)
        except Exception:  # an unknown field (KeyError) or a refused value: the long way
            return None


class BoundedIntegerField(serializers.IntegerField):
    """An integer within ±MAX_INTEGER (64-bit), tighter with min_value/max_value.

    Takes a JSON integer, an integral float within range or a string of ASCII digits (a query
    parameter); `1e23`, `1.5`, `true`, `²` and other Unicode digits are a 422.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", -MAX_INTEGER)
        kwargs.setdefault("max_value", MAX_INTEGER)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        # Out-of-range values pass here and fail the min/max validators, with their message.
        if isinstance(data, str) and INTEGER_PATTERN.fullmatch(data):
            return int(data)
        if isinstance(data, float) and math.isfinite(data) and data.is_integer():
            return int(data)
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        self.fail("invalid")


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The validated data of `data` (a 422 naming the fields otherwise)."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def request_data(serializer_class: type[RequestSerializer], data: Any) -> dict[str, Any]:
    """`validated`, through `RequestSerializer.quickly_validated` first: the same data, and
    for a body it does not take the same 422 as ever."""
    quick = serializer_class.quickly_validated(data)
    return quick if quick is not None else validated(serializer_class, data)


class JSONObjectField(serializers.JSONField):
    """A JSON object (dict)."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


#: The most values a JSON filter may match (`{"a": 1, "b": {"c": 2}}` matches 2): SQLite matches
#: them key by key in one expression whose depth it bounds (1,000, with the rest of the query).
MAX_FILTER_VALUES = 100


def filter_values(value: dict[str, Any]) -> int:
    """How many values a JSON filter object matches: its leaves (a nested non-empty object
    counts its own leaves; anything else is one)."""
    return sum(
        filter_values(item) if isinstance(item, dict) and item else 1 for item in value.values()
    )


class JSONFilterField(JSONObjectField):
    """A JSON object that rows must contain (a search's `metadata` or `values`): at most
    `MAX_FILTER_VALUES` values to match."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if filter_values(value) > MAX_FILTER_VALUES:
            raise serializers.ValidationError(f"At most {MAX_FILTER_VALUES} values to match.")
        return value


#: The most items a list of a request may hold: ids (a thread search's and count's `ids`, a
#: prune's `thread_ids`, a bulk cancel's `run_ids`), `select`ed fields, `feedback_keys`. Ids
#: become bound parameters of one query; a longer list is a 422 before any item is read.
MAX_LIST_ITEMS = 1000


class BoundedListField(serializers.ListField):
    """A request's list: at most `max_length` items (MAX_LIST_ITEMS unless given), refused by
    its length before its items are validated (DRF checks the length after them)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_LIST_ITEMS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, list) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
class ThreadIdField(serializers.CharField):
    """A thread id: a UUID or `[A-Za-z0-9_-]{1,64}`, matched whole (no trimming), and not the
    name of an endpoint under /threads (ids.validate_thread_id)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        try:
            return validate_thread_id(data, field="id")
        except Invalid as exc:
            raise serializers.ValidationError(exc.detail["id"]) from None


@extend_schema_field(OpenApiTypes.UUID)
class UUIDStringField(serializers.CharField):
    """A UUID spelled as the SDKs do (ids.UUID_PATTERN, matched whole), as its canonical string."""

    default_error_messages = {"invalid": "Must be a UUID."}

    def to_internal_value(self, data: Any) -> str:
        parsed = parse_uuid(data)
        if parsed is None:
            self.fail("invalid")
        return str(parsed)


class CheckpointIdField(UUIDStringField):
    """A checkpoint id: LangGraph's checkpoint ids are UUIDs."""

    default_error_messages = {"invalid": "Must be a checkpoint id (a UUID)."}


class StrictCharField(serializers.CharField):
    """A JSON string: a number, boolean or list is a 422, never coerced to text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.", code="invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """One of fixed strings, given as a JSON string."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.", code="invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON `true` or `false`: `"yes"`, `1` or `"true"` are a 422, never coerced."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError("Must be true or false.", code="invalid")
        return data


class StrictFloatField(serializers.FloatField):
    """A JSON number: a string or a boolean is a 422, never parsed."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError("Must be a number.", code="invalid")
        return super().to_internal_value(data)
