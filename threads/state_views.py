"""Thread state, history and copy endpoints: async views over the engine's state reads and
threads.state's writes."""

import re
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from deerflow_site.api.async_views import api_view, by_method, json_body
from deerflow_site.api.checkpoints import CheckpointField
from deerflow_site.api.ids import validate_thread_id, validate_uuid
from deerflow_site.api.query import QueryBooleanField, query_data, validated_query
from deerflow_site.api.schema import error
from deerflow_site.api.serializers import (
    BoundedIntegerField,
    BoundedListField,
    CheckpointIdField,
    JSONObjectField,
    RequestSerializer,
    StrictBooleanField,
    StrictCharField,
    validated,
)
from deerflow_site.bridge import Executor, call_sync
from runs.engine import get_thread_history, get_thread_state
from threads import selectors, state
from threads.models import Thread
from threads.serializers import ThreadSerializer, thread_data

METADATA_KEY_PATTERN = re.compile(r"\A[A-Za-z0-9_.-]+\Z")
#: A 409 of what loads a checkpoint (`runs.engine.errors.DamagedCheckpoint`).
DAMAGED = error("A checkpoint of the thread cannot be loaded (the detail names the problem).")


class SelectField(BoundedListField):
    """ThreadState fields to return: a field name or `values.<key>`."""

    child = StrictCharField()

    def to_internal_value(self, data: Any) -> list[str]:
        fields = super().to_internal_value(data)
        for field in fields:
            if field not in state.STATE_FIELDS and not field.startswith("values."):
                raise serializers.ValidationError(f"Unknown state field {field!r}.")
        return fields


class StateQuerySerializer(RequestSerializer):
    subgraphs = QueryBooleanField(required=False, default=False)
    select = SelectField(required=False, allow_null=True)


class StateAtCheckpointSerializer(StateQuerySerializer):
    """The body of `POST /threads/{t}/state/checkpoint`: JSON, so `subgraphs` is a JSON boolean."""

    subgraphs = StrictBooleanField(required=False, default=False)
    checkpoint = CheckpointField()


class StateUpdateSerializer(RequestSerializer):
    values = serializers.JSONField(required=False, allow_null=True)
    as_node = StrictCharField(required=False, allow_null=True)
    checkpoint = CheckpointField(required=False, allow_null=True)
    checkpoint_id = CheckpointIdField(required=False, allow_null=True)

    def validate_values(self, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            return value
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return value
        raise serializers.ValidationError("Must be a JSON object, a list of objects or null.")


class HistorySerializer(RequestSerializer):
    limit = BoundedIntegerField(min_value=1, max_value=1000, default=10)
    before = CheckpointField(require_id=True, required=False, allow_null=True)
    metadata = JSONObjectField(required=False, allow_null=True)
    checkpoint = CheckpointField(required=False, allow_null=True)
    select = SelectField(required=False, allow_null=True)

    def validate_metadata(self, value: Any) -> Any:
        for key in value or {}:
            if not METADATA_KEY_PATTERN.fullmatch(key):  # the SQLite saver puts keys in its SQL
                raise serializers.ValidationError(f"Invalid metadata key {key!r}.")
        return value


class HistoryQuerySerializer(RequestSerializer):
    """The query of `GET /threads/{t}/history` (the body of the POST takes filters too)."""

    limit = BoundedIntegerField(min_value=1, max_value=1000, default=10)
    before = CheckpointIdField(required=False, help_text="a checkpoint id: states before it")
    select = SelectField(required=False)


class CheckpointRefSerializer(serializers.Serializer):
    """Where a state is: the `checkpoint` (and `parent_checkpoint`) of a ThreadState."""

    thread_id = serializers.CharField(read_only=True)
    checkpoint_ns = serializers.CharField(read_only=True)
    checkpoint_id = serializers.UUIDField(read_only=True)
    checkpoint_map = serializers.DictField(read_only=True, allow_null=True)


class ThreadStateSerializer(serializers.Serializer):
    """A ThreadState: the thread at one checkpoint (only the `select`ed fields, when given)."""

    values = serializers.JSONField(required=False, help_text="the graph's channel values")
    next = serializers.ListField(child=serializers.CharField(), required=False)
    tasks = serializers.ListField(child=serializers.DictField(), required=False)
    checkpoint = CheckpointRefSerializer(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)
    created_at = serializers.CharField(
        required=False, allow_null=True, help_text="ISO 8601 time of the checkpoint"
    )
    parent_checkpoint = CheckpointRefSerializer(required=False, allow_null=True)
    interrupts = serializers.ListField(child=serializers.DictField(), required=False)


class StateUpdateResultSerializer(serializers.Serializer):
    """What a state update made: the new checkpoint."""

    checkpoint = CheckpointRefSerializer()


async def _thread(request: HttpRequest, thread_id: str, *, action: str = "view") -> Thread:
    return await call_sync(
        selectors.get_thread,
        user=request.user,
        thread_id=validate_thread_id(thread_id),
        action=action,
        on=Executor.THREAD_SENSITIVE,
    )


@extend_schema(
    operation_id="threads_state_get",
    parameters=[StateQuerySerializer],
    responses={200: ThreadStateSerializer, 409: DAMAGED},
)
@api_view(required_scopes={"GET": "threads:read"})
async def get_state(request: HttpRequest, thread_id: str) -> HttpResponse:
    """The thread's latest state (`?subgraphs=true` includes subgraph states)."""
    query = validated_query(StateQuerySerializer, request.GET)
    thread = await _thread(request, thread_id)
    result = await get_thread_state(thread=thread, subgraphs=query["subgraphs"])
    return JsonResponse(state.select_state_fields(result, query.get("select")))


@extend_schema(
    operation_id="threads_state_get_at_checkpoint",
    parameters=[StateQuerySerializer],
    responses={200: ThreadStateSerializer, 409: DAMAGED},
)
@api_view(required_scopes={"GET": "threads:read"})
async def get_state_at_checkpoint(
    request: HttpRequest, thread_id: str, checkpoint_id: str
) -> HttpResponse:
    """The thread's state at one checkpoint; 404 if the thread has no such checkpoint."""
    query = validated_query(StateQuerySerializer, request.GET)
    checkpoint_id = str(validate_uuid(checkpoint_id, field="checkpoint_id"))
    thread = await _thread(request, thread_id)
    result = await get_thread_state(
        thread=thread, checkpoint_id=checkpoint_id, subgraphs=query["subgraphs"]
    )
    return JsonResponse(state.select_state_fields(result, query.get("select")))


@extend_schema(
    operation_id="threads_state_post_at_checkpoint",
    request=StateAtCheckpointSerializer,
    responses={200: ThreadStateSerializer, 409: DAMAGED},
)
@api_view(required_scopes={"POST": "threads:read"})
async def post_state_at_checkpoint(request: HttpRequest, thread_id: str) -> HttpResponse:
    """The thread's state at a `checkpoint` given in the body (what the SDK posts)."""
    body = validated(StateAtCheckpointSerializer, json_body(request))
    thread = await _thread(request, thread_id)
    result = await get_thread_state(
        thread=thread, checkpoint=body["checkpoint"], subgraphs=body["subgraphs"]
    )
    return JsonResponse(state.select_state_fields(result, body.get("select")))


@extend_schema(
    operation_id="threads_state_update",
    request=StateUpdateSerializer,
    responses={
        200: StateUpdateResultSerializer,
        409: error("A run of the thread is active, or its checkpoint cannot be loaded."),
    },
)
@api_view(required_scopes={"POST": "threads:write"})
async def update_state(request: HttpRequest, thread_id: str) -> HttpResponse:
    """Write values into the thread's state through its graph; returns {checkpoint}."""
    body = validated(StateUpdateSerializer, json_body(request))
    thread = await _thread(request, thread_id, action="change")
    result = await state.update_thread_state(
        thread=thread,
        values=body.get("values"),
        as_node=body.get("as_node"),
        checkpoint=body.get("checkpoint"),
        checkpoint_id=body.get("checkpoint_id"),
        user=request.user,
    )
    return JsonResponse(result)


async def _history(request: HttpRequest, thread_id: str, params: dict[str, Any]) -> HttpResponse:
    body = validated(HistorySerializer, params)
    thread = await _thread(request, thread_id)
    states = await get_thread_history(
        thread=thread,
        limit=body["limit"],
        before=body.get("before"),
        metadata=body.get("metadata"),
        checkpoint=body.get("checkpoint"),
    )
    select = body.get("select")
    return JsonResponse([state.select_state_fields(s, select) for s in states], safe=False)


@extend_schema(
    operation_id="threads_history_get",
    parameters=[HistoryQuerySerializer],
    responses={200: ThreadStateSerializer(many=True)},
)
@api_view(required_scopes={"GET": "threads:read"})
async def get_history(request: HttpRequest, thread_id: str) -> HttpResponse:
    """The thread's states, newest first (`?limit=&before=`)."""
    return await _history(request, thread_id, query_data(HistoryQuerySerializer, request.GET))


@extend_schema(
    operation_id="threads_history_post",
    request=HistorySerializer,
    responses={200: ThreadStateSerializer(many=True)},
)
@api_view(required_scopes={"POST": "threads:read"})
async def post_history(request: HttpRequest, thread_id: str) -> HttpResponse:
    """The thread's states, newest first, filtered by the body."""
    return await _history(request, thread_id, json_body(request))


@extend_schema(
    operation_id="threads_copy", request=None, responses={200: ThreadSerializer, 409: DAMAGED}
)
@api_view(required_scopes={"POST": "threads:write"})
async def copy_thread(request: HttpRequest, thread_id: str) -> HttpResponse:
    """A copy of the thread, with its checkpoints, owned by the caller (no body is read, but a
    malformed one is refused like anywhere else)."""
    json_body(request)
    thread = await _thread(request, thread_id)
    copy = await state.copy_thread(thread=thread, user=request.user)
    return JsonResponse(thread_data(copy))


thread_state = by_method(get=get_state, post=update_state)
thread_state_checkpoint = by_method(post=post_state_at_checkpoint)
thread_state_at = by_method(get=get_state_at_checkpoint)
thread_history = by_method(get=get_history, post=post_history)
thread_copy = by_method(post=copy_thread)
