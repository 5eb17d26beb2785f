"""Assistants: one per registered graph, read-only, shaped like the SDK's `Assistant`.

The graph registry (runs.engine.registry) is the only source of assistants; creating, changing or
deleting one through the API is refused with a 405 that says so.
"""

import datetime
import importlib.util
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from langgraph.channels.base import BaseChannel
from langgraph.graph import StateGraph
from pydantic import TypeAdapter
from rest_framework import serializers

from deerflow_site.api.async_views import api_view, by_method, json_body
from deerflow_site.api.errors import Invalid
from deerflow_site.api.pagination import pagination_headers
from deerflow_site.api.serializers import JSONObjectField, RequestSerializer, validated
from runs.engine import registry
from runs.engine.serialization import to_jsonable

SORT_FIELDS = ("assistant_id", "graph_id", "name", "created_at", "updated_at")
ASSISTANT_FIELDS = (
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "created_at",
    "updated_at",
    "metadata",
    "version",
)
READ_ONLY_DETAIL = (
    "Assistants are defined by the server's graph registry (langgraph.json): "
    "they cannot be created, changed or deleted through the API."
)
_started_at = datetime.datetime.now(datetime.UTC)


# --- Assistants from graph specs ----------------------------------------------------------


def _source_file(spec: registry.GraphSpec) -> Path | None:
    path = registry.graph_file(spec.source, spec.base_dir)
    if path is not None:
        return path
    found = importlib.util.find_spec(spec.source.rpartition(":")[0])
    return Path(found.origin) if found is not None and found.origin else None


@cache
def _defined_at(spec: registry.GraphSpec) -> str:
    """When the graph's code last changed: the same answer from every server process."""
    try:
        path = _source_file(spec)
        if path is None:
            return _started_at.isoformat()
        moment = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
    except (OSError, ImportError, ValueError):
        moment = _started_at
    return moment.isoformat()


def assistant_payload(spec: registry.GraphSpec) -> dict[str, Any]:
    """The `Assistant` of a registered graph."""
    defined_at = _defined_at(spec)
    return {
        "assistant_id": str(spec.assistant_id),
        "graph_id": spec.graph_id,
        "config": {},
        "context": {},
        "created_at": defined_at,
        "updated_at": defined_at,
        "metadata": {"created_by": "system"},
        "version": 1,
        "name": spec.graph_id,
        "description": None,
    }


def search_assistants(
    *,
    graph_id: str | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
) -> list[dict[str, Any]]:
    """Assistants matching every filter: exact graph id, name substring, metadata subset."""
    found = [assistant_payload(spec) for spec in registry.graph_specs().values()]
    if graph_id:
        found = [a for a in found if a["graph_id"] == graph_id]
    if name:
        found = [a for a in found if name.lower() in a["name"].lower()]
    if metadata:
        found = [a for a in found if all(a["metadata"].get(k) == v for k, v in metadata.items())]
    found.sort(key=lambda a: a["name"])  # a stable tie-break, whatever the order asked
    found.sort(key=lambda a: a[sort_by], reverse=sort_order == "desc")
    return found


# --- What a graph looks like ----------------------------------------------------------------


def _or_none(make: Any) -> dict[str, Any] | None:
    """A JSON schema, or None when the graph's types cannot be described (as LangGraph does)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make()
    except Exception:
        return None


def _fields_jsonschema(schema: Any, channels: dict[str, Any]) -> dict[str, Any]:
    """An object schema from a state's channels, typing each field as far as pydantic can.

    For states pydantic refuses whole (a `typing.TypedDict` on Python < 3.12, say).
    """
    definitions: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for key, channel in channels.items():
        if not isinstance(channel, BaseChannel):  # managed values are not part of the state
            continue
        try:
            field = TypeAdapter(channel.ValueType).json_schema()
        except Exception:
            field = {}
        definitions.update(field.pop("$defs", {}))
        properties[key] = field
    result = {"title": getattr(schema, "__name__", "State"), "type": "object"}
    result["properties"] = properties
    if definitions:
        result["$defs"] = definitions
    return result


def _builder_jsonschema(graph: Any, which: str) -> dict[str, Any]:
    """The JSON schema of a StateGraph's `state_schema`, `input_schema` or `output_schema`."""
    builder = graph.builder
    schema = getattr(builder, which)
    try:
        return TypeAdapter(schema).json_schema()
    except Exception:
        return _fields_jsonschema(schema, builder.schemas.get(schema, {}))


def _graph_jsonschema(graph: Any, which: str, langgraph_way: Any) -> dict[str, Any] | None:
    """LangGraph's schema when it can make one, else one from the StateGraph's channels."""
    schema = _or_none(langgraph_way)
    if schema is None and isinstance(getattr(graph, "builder", None), StateGraph):
        schema = _or_none(lambda: _builder_jsonschema(graph, which))
    return schema


def graph_schemas(graph_id: str, graph: Any) -> dict[str, Any]:
    """The `GraphSchema` of a compiled graph."""
    return to_jsonable(
        {
            "graph_id": graph_id,
            "input_schema": _graph_jsonschema(graph, "input_schema", graph.get_input_jsonschema),
            "output_schema": _graph_jsonschema(graph, "output_schema", graph.get_output_jsonschema),
            "state_schema": _graph_jsonschema(
                graph, "state_schema", lambda: _builder_jsonschema(graph, "state_schema")
            ),
            "config_schema": _or_none(graph.get_config_jsonschema),
            "context_schema": _or_none(graph.get_context_jsonschema),
        }
    )


def graph_drawing(graph: Any, *, xray: bool | int) -> dict[str, Any]:
    """The graph's nodes and edges (`graph.get_graph(xray=...).to_json()`)."""
    try:
        return to_jsonable(graph.get_graph(xray=xray).to_json())
    except Exception as exc:  # a graph LangGraph cannot draw is not a server failure
        raise Invalid(f"This graph cannot be drawn: {exc}") from None


def subgraph_schemas(
    graph_id: str, graph: Any, *, namespace: str | None, recurse: bool
) -> dict[str, Any]:
    """Schemas of the graph's subgraphs by namespace."""
    return {
        ns: graph_schemas(graph_id, subgraph)
        for ns, subgraph in graph.get_subgraphs(namespace=namespace, recurse=recurse)
    }


# --- Requests -------------------------------------------------------------------------------


class AssistantCountSerializer(RequestSerializer):
    graph_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    name = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    metadata = JSONObjectField(required=False, allow_null=True)


class AssistantSearchSerializer(AssistantCountSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(min_value=0, default=0)
    sort_by = serializers.ChoiceField(choices=SORT_FIELDS, required=False, allow_null=True)
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False, allow_null=True)
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=ASSISTANT_FIELDS), required=False, allow_null=True
    )


class VersionsSerializer(RequestSerializer):
    metadata = JSONObjectField(required=False, allow_null=True)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(min_value=0, default=0)


class SetLatestSerializer(RequestSerializer):
    version = serializers.IntegerField()


class XrayField(serializers.Field):
    """`xray`: true/false or a subgraph depth."""

    def to_internal_value(self, data: Any) -> bool | int:
        text = str(data).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        if text.isdigit():
            return int(text)
        raise serializers.ValidationError("Must be true, false or a non-negative integer.")


class GraphQuerySerializer(RequestSerializer):
    xray = XrayField(required=False, default=False)


class SubgraphsQuerySerializer(RequestSerializer):
    recurse = serializers.BooleanField(required=False, default=False)


async def _graph(assistant_id: str) -> tuple[registry.GraphSpec, Any]:
    spec = registry.resolve_assistant(assistant_id)
    graph = await sync_to_async(registry.load_graph, thread_sensitive=False)(spec.graph_id)
    return spec, graph


# --- Views ----------------------------------------------------------------------------------


@api_view()
async def search(request: HttpRequest) -> HttpResponse:
    """Assistants matching the filters, a window of them, with X-Pagination-* headers."""
    body = validated(AssistantSearchSerializer, json_body(request))
    found = search_assistants(
        graph_id=body.get("graph_id"),
        name=body.get("name"),
        metadata=body.get("metadata"),
        sort_by=body.get("sort_by") or "created_at",
        sort_order=body.get("sort_order") or "desc",
    )
    limit, offset = body["limit"], body["offset"]
    window = found[offset : offset + limit]
    if body.get("select"):
        window = [{field: a[field] for field in body["select"]} for a in window]
    response = JsonResponse(window, safe=False)
    for header, value in pagination_headers(total=len(found), limit=limit, offset=offset).items():
        response[header] = value
    return response


@api_view()
async def count(request: HttpRequest) -> HttpResponse:
    """How many assistants match the filters."""
    body = validated(AssistantCountSerializer, json_body(request))
    found = search_assistants(
        graph_id=body.get("graph_id"), name=body.get("name"), metadata=body.get("metadata")
    )
    return JsonResponse(len(found), safe=False)


@api_view()
async def detail(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """One assistant, by its UUID or its graph id."""
    return JsonResponse(assistant_payload(registry.resolve_assistant(assistant_id)))


@api_view()
async def drawing(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """The assistant's graph as nodes and edges (`?xray=true|N` includes subgraphs)."""
    query = validated(GraphQuerySerializer, request.GET.dict())
    _, graph = await _graph(assistant_id)
    return JsonResponse(graph_drawing(graph, xray=query["xray"]))


@api_view()
async def schemas(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """The JSON schemas of the assistant's graph: input, output, state, config, context."""
    spec, graph = await _graph(assistant_id)
    return JsonResponse(graph_schemas(spec.graph_id, graph))


@api_view()
async def subgraphs(
    request: HttpRequest, assistant_id: str, namespace: str | None = None
) -> HttpResponse:
    """Schemas of the assistant's subgraphs (`?recurse=true` goes deeper)."""
    query = validated(SubgraphsQuerySerializer, request.GET.dict())
    spec, graph = await _graph(assistant_id)
    found = subgraph_schemas(spec.graph_id, graph, namespace=namespace, recurse=query["recurse"])
    return JsonResponse(found)


@api_view()
async def versions(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """The assistant's versions: there is one, the registered graph."""
    body = validated(VersionsSerializer, json_body(request))
    assistant = assistant_payload(registry.resolve_assistant(assistant_id))
    version = {key: value for key, value in assistant.items() if key != "updated_at"}
    matches = all(version["metadata"].get(k) == v for k, v in (body.get("metadata") or {}).items())
    found = [version] if matches else []
    return JsonResponse(found[body["offset"] : body["offset"] + body["limit"]], safe=False)


@api_view()
async def set_latest(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """Make a version the latest: only version 1 exists, and it already is."""
    body = validated(SetLatestSerializer, json_body(request))
    assistant = assistant_payload(registry.resolve_assistant(assistant_id))
    if body["version"] != assistant["version"]:
        raise Invalid({"version": [f"The assistant has only version {assistant['version']}."]})
    return JsonResponse(assistant)


assistant_list = by_method(refused=READ_ONLY_DETAIL)
assistant_search = by_method(post=search)
assistant_count = by_method(post=count)
assistant_detail = by_method(get=detail, refused=READ_ONLY_DETAIL)
assistant_graph = by_method(get=drawing)
assistant_schemas = by_method(get=schemas)
assistant_subgraphs = by_method(get=subgraphs)
assistant_versions = by_method(post=versions)
assistant_latest = by_method(post=set_latest)
