"""The Run resource as clients see it, and the query strings of the run endpoints. The create
bodies are `runs/create_serializers.py`."""

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deerflow_site.api.pagination import LimitOffsetSerializer
from deerflow_site.api.query import QueryBooleanField
from deerflow_site.api.serializers import (
    BoundedListField,
    RequestSerializer,
    ThreadIdField,
    UUIDStringField,
)
from deerflow_site.redaction import redact_secrets
from runs.models import Run

RUN_FIELDS = (
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "status",
    "metadata",
    "kwargs",
    "multitask_strategy",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "llm_calls",
    "token_usage_by_model",
)


MODEL_USAGE_SCHEMA = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "properties": {
            key: {"type": "integer"}
            for key in ("input_tokens", "output_tokens", "total_tokens", "llm_calls")
        },
    },
}


def public_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A run's kwargs as clients see them: secrets in config and context redacted."""
    shown = dict(kwargs)
    for key in ("config", "context"):
        if key in shown:
            shown[key] = redact_secrets(shown[key])
    return shown


class RunSerializer(serializers.ModelSerializer):
    """The Run object of the contract."""

    thread_id = serializers.CharField(source="thread.pk", read_only=True)
    kwargs = serializers.SerializerMethodField()
    token_usage_by_model = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = RUN_FIELDS
        read_only_fields = RUN_FIELDS

    def get_kwargs(self, run: Run) -> dict[str, Any]:
        return public_kwargs(run.kwargs or {})

    @extend_schema_field(MODEL_USAGE_SCHEMA)
    def get_token_usage_by_model(self, run: Run) -> dict[str, dict[str, int]]:
        """`{model: {input_tokens, output_tokens, total_tokens, llm_calls}}` (no query for a
        run that has called no model yet; list views prefetch `model_usage`)."""
        if not run.llm_calls:
            return {}
        return {
            usage.model_name: {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
                "llm_calls": usage.llm_calls,
            }
            for usage in run.model_usage.all()
        }


def run_json(run: Run, *, select: list[str] | None = None) -> dict[str, Any]:
    """A run as the JSON clients get; `select` keeps only the named fields."""
    data = RunSerializer(run).data
    return {key: data[key] for key in select} if select else dict(data)


class RunListQuerySerializer(LimitOffsetSerializer):
    """`?limit&offset&status&select` of `GET /threads/{t}/runs`."""

    status = serializers.ChoiceField(choices=Run.Status.choices, required=False, allow_null=True)
    select = BoundedListField(
        child=serializers.ChoiceField(choices=RUN_FIELDS), required=False, allow_null=True
    )


class CancelQuerySerializer(RequestSerializer):
    """`?wait=0|1&action=interrupt|rollback` of the cancel endpoints."""

    wait = QueryBooleanField(default=False)
    action = serializers.ChoiceField(
        choices=Run.CancelAction.choices, default=Run.CancelAction.INTERRUPT
    )


class JoinQuerySerializer(RequestSerializer):
    """`?cancel_on_disconnect` of `GET …/runs/{r}/join` (the JS SDK's `cancelOnDisconnect`)."""

    cancel_on_disconnect = QueryBooleanField(default=False)


class JoinStreamQuerySerializer(CancelQuerySerializer):
    """`?stream_mode&cancel_on_disconnect&action&wait` of `GET|POST …/runs/{r}/stream`."""

    cancel_on_disconnect = QueryBooleanField(default=False)
    action = serializers.ChoiceField(
        choices=Run.CancelAction.choices, required=False, allow_null=True
    )


class BulkCancelSerializer(RequestSerializer):
    """`POST /runs/cancel`: `{thread_id, run_ids}` or `{status}`."""

    thread_id = ThreadIdField(required=False, allow_null=True)
    run_ids = BoundedListField(child=UUIDStringField(), required=False, allow_null=True)
    status = serializers.ChoiceField(
        choices=["pending", "running", "all"], required=False, allow_null=True
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        thread_id, run_ids, status = (
            attrs.get("thread_id"),
            attrs.get("run_ids"),
            attrs.get("status"),
        )
        if status is None and thread_id is None:
            raise serializers.ValidationError("Send {thread_id, run_ids} or {status}.")
        if status is not None and (thread_id is not None or run_ids):
            raise serializers.ValidationError("Send either {thread_id, run_ids} or {status}.")
        if run_ids and thread_id is None:
            raise serializers.ValidationError({"thread_id": ["Required with run_ids."]})
        if run_ids:
            attrs["run_ids"] = [UUID(run_id) for run_id in run_ids]
        return attrs
