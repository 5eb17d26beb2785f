"""Thread request and response bodies."""

from typing import Any

from rest_framework import serializers

from deerflow_site.api.pagination import LimitOffsetSerializer
from deerflow_site.api.serializers import (
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
    """The Thread object of the contract."""

    class Meta:
        model = Thread
        fields = THREAD_FIELDS
        read_only_fields = THREAD_FIELDS


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


class ThreadPatchSerializer(RequestSerializer):
    metadata = JSONObjectField(required=False, allow_null=True)
    ttl = TTLField(required=False, allow_null=True)


class ThreadSearchSerializer(LimitOffsetSerializer):
    metadata = JSONObjectField(required=False, allow_null=True)
    values = JSONObjectField(required=False, allow_null=True)
    ids = serializers.ListField(child=ThreadIdField(), required=False, allow_null=True)
    status = serializers.ChoiceField(choices=Thread.Status.choices, required=False, allow_null=True)
    sort_by = serializers.ChoiceField(choices=SORT_FIELDS, default="created_at")
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=THREAD_FIELDS), required=False, allow_null=True
    )


class ThreadCountSerializer(ThreadSearchSerializer):
    """The search filters, without the window."""
