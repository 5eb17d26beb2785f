"""Thread request and response bodies."""

from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from deerflow_site.api.pagination import LimitOffsetSerializer
from deerflow_site.api.serializers import (
    MAX_LIST_ITEMS,
    BoundedListField,
    JSONFilterField,
    JSONObjectField,
    RequestSerializer,
    ThreadIdField,
)
from threads.models import Thread
from threads.selectors import SORT_FIELDS

THREAD_FIELDS = (
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "status",
    "config",
    "values",
    "interrupts",
    "error",
)


class ThreadSerializer(serializers.ModelSerializer):
    """The Thread object of the contract (its schema; `thread_data` renders it)."""

    class Meta:
        model = Thread
        fields = THREAD_FIELDS
        read_only_fields = THREAD_FIELDS


def thread_data(thread: Thread) -> dict[str, Any]:
    """The Thread object of the contract, as `ThreadSerializer` renders it (times in ISO 8601,
    UTC as `Z`), without building a serializer per request: every thread endpoint answers it."""
    return {
        "thread_id": thread.thread_id,
        "created_at": iso_time(thread.created_at),
        "updated_at": iso_time(thread.updated_at),
        "state_updated_at": iso_time(thread.state_updated_at),
        "metadata": thread.metadata,
        "status": thread.status,
        "config": thread.config,
        "values": thread.values,
        "interrupts": thread.interrupts,
        "error": thread.error,
    }


def iso_time(value: datetime | None) -> str | None:
    """An aware time as DRF's DateTimeField writes it in UTC: ISO 8601, `Z` for +00:00."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


#: The longest time to live, minutes (ten years).
MAX_TTL_MINUTES = 10 * 366 * 24 * 60


class TTLField(serializers.JSONField):
    """A time to live in minutes (at most MAX_TTL_MINUTES): a number, or
    `{"ttl": minutes, "strategy": "delete"}`."""

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if isinstance(value, dict):
            strategy = value.get("strategy", "delete")
            if strategy != "delete":
                raise serializers.ValidationError("Only the 'delete' strategy is supported.")
            value = value.get("ttl")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise serializers.ValidationError("Must be a positive number of minutes.")
        if value > MAX_TTL_MINUTES:
            raise serializers.ValidationError(f"Must be at most {MAX_TTL_MINUTES} minutes.")
        return float(value)


class ThreadCreateSerializer(RequestSerializer):
    thread_id = ThreadIdField(required=False, allow_null=True)
    metadata = JSONObjectField(required=False, allow_null=True)
    if_exists = serializers.ChoiceField(choices=["raise", "do_nothing"], default="raise")
    ttl = TTLField(required=False, allow_null=True)
    supersteps = serializers.JSONField(required=False, allow_null=True)
    unsupported_fields = ("supersteps",)


#: The most thread ids one `POST /threads/prune` names.
PRUNE_LIMIT = MAX_LIST_ITEMS


class ThreadPruneSerializer(RequestSerializer):
    """`POST /threads/prune`: `{thread_ids, strategy}`; only `delete` is served."""

    thread_ids = BoundedListField(child=ThreadIdField(), max_length=PRUNE_LIMIT)
    strategy = serializers.ChoiceField(choices=["delete", "keep_latest"], default="delete")

    def validate_strategy(self, value: str) -> str:
        if value == "keep_latest":
            raise serializers.ValidationError(
                "keep_latest is not supported: only delete (the whole thread) is."
            )
        return value


class ThreadPatchSerializer(RequestSerializer):
    metadata = JSONObjectField(required=False, allow_null=True)
    ttl = TTLField(required=False, allow_null=True)


class ThreadSearchSerializer(LimitOffsetSerializer):
    metadata = JSONFilterField(required=False, allow_null=True)
    values = JSONFilterField(required=False, allow_null=True)
    ids = BoundedListField(child=ThreadIdField(), required=False, allow_null=True)
    status = serializers.ChoiceField(choices=Thread.Status.choices, required=False, allow_null=True)
    sort_by = serializers.ChoiceField(choices=SORT_FIELDS, default="created_at")
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
    select = BoundedListField(
        child=serializers.ChoiceField(choices=THREAD_FIELDS), required=False, allow_null=True
    )


class ThreadCountSerializer(ThreadSearchSerializer):
    """The search filters, without the window."""
