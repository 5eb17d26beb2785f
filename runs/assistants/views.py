"""Assistant endpoints: search, count, one assistant, its graph, schemas, subgraphs, versions."""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema

from deerflow_site.api.async_views import api_view, by_method, json_body
from deerflow_site.api.pagination import PAGINATION_HEADERS, pagination_headers
from deerflow_site.api.query import validated_query
from deerflow_site.api.schema import error
from deerflow_site.api.serializers import validated
from deerflow_site.bridge import Executor, call_sync
from deerflow_site.errors import Invalid
from runs.assistants.selectors import assistant_payload, search_assistants
from runs.assistants.serializers import (
    AssistantCountSerializer,
    AssistantSearchSerializer,
    AssistantSerializer,
    GraphQuerySerializer,
    SetLatestSerializer,
    SubgraphsQuerySerializer,
    VersionsSerializer,
)
from runs.engine import (
    GraphSpec,
    graph_drawing,
    graph_schemas,
    load_graph,
    resolve_assistant,
    subgraph_schemas,
)

#: Every assistant endpoint reads the graph registry (writes are refused).
READ = "assistants:read"
READ_ONLY_DETAIL = (
    "Assistants are defined by the server's graph registry (langgraph.json): "
    "they cannot be created, changed or deleted through the API."
)


UNKNOWN_ASSISTANT = {
    404: error("No assistant with this UUID."),
    422: error("Not a registered graph name, nor a UUID."),
}
JSON_OBJECT = OpenApiTypes.OBJECT


async def _graph(assistant_id: str) -> tuple[GraphSpec, Any]:
    spec = resolve_assistant(assistant_id)
    graph = await call_sync(load_graph, spec.graph_id, on=Executor.BLOCKING)
    return spec, graph


@extend_schema(
    operation_id="assistants_search",
    request=AssistantSearchSerializer,
    parameters=PAGINATION_HEADERS,
    responses={200: AssistantSerializer(many=True)},
)
@api_view(required_scopes={"POST": READ})
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


@extend_schema(
    operation_id="assistants_count", request=AssistantCountSerializer, responses={200: int}
)
@api_view(required_scopes={"POST": READ})
async def count(request: HttpRequest) -> HttpResponse:
    """How many assistants match the filters."""
    body = validated(AssistantCountSerializer, json_body(request))
    found = search_assistants(
        graph_id=body.get("graph_id"), name=body.get("name"), metadata=body.get("metadata")
    )
    return JsonResponse(len(found), safe=False)


@extend_schema(
    operation_id="assistants_get", responses={200: AssistantSerializer, **UNKNOWN_ASSISTANT}
)
@api_view(required_scopes={"GET": READ})
async def detail(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """One assistant, by its UUID or its graph id."""
    return JsonResponse(assistant_payload(resolve_assistant(assistant_id)))


@extend_schema(
    operation_id="assistants_graph",
    parameters=[GraphQuerySerializer],
    responses={
        200: OpenApiResponse(JSON_OBJECT, description="{nodes: [...], edges: [...]}"),
        **UNKNOWN_ASSISTANT,
    },
)
@api_view(required_scopes={"GET": READ})
async def drawing(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """The assistant's graph as nodes and edges (`?xray=true|N` includes subgraphs)."""
    query = validated_query(GraphQuerySerializer, request.GET)
    _, graph = await _graph(assistant_id)
    return JsonResponse(graph_drawing(graph, xray=query["xray"]))


@extend_schema(
    operation_id="assistants_schemas",
    responses={
        200: OpenApiResponse(
            JSON_OBJECT,
            description="{graph_id, input_schema, output_schema, state_schema, config_schema, "
            "context_schema}: JSON schemas, null where the graph has none",
        ),
        **UNKNOWN_ASSISTANT,
    },
)
@api_view(required_scopes={"GET": READ})
async def schemas(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """The JSON schemas of the assistant's graph: input, output, state, config, context."""
    spec, graph = await _graph(assistant_id)
    return JsonResponse(graph_schemas(spec.graph_id, graph))


async def _subgraphs(
    request: HttpRequest, assistant_id: str, namespace: str | None
) -> HttpResponse:
    query = validated_query(SubgraphsQuerySerializer, request.GET)
    spec, graph = await _graph(assistant_id)
    found = subgraph_schemas(spec.graph_id, graph, namespace=namespace, recurse=query["recurse"])
    return JsonResponse(found)


SUBGRAPHS = OpenApiResponse(
    JSON_OBJECT, description="{namespace: {graph_id, input_schema, output_schema, ...}}"
)


@extend_schema(
    operation_id="assistants_subgraphs",
    parameters=[SubgraphsQuerySerializer],
    responses={200: SUBGRAPHS, **UNKNOWN_ASSISTANT},
)
@api_view(required_scopes={"GET": READ})
async def subgraphs(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """Schemas of the assistant's subgraphs (`?recurse=true` goes deeper)."""
    return await _subgraphs(request, assistant_id, None)


@extend_schema(
    operation_id="assistants_subgraphs_in_namespace",
    parameters=[SubgraphsQuerySerializer],
    responses={200: SUBGRAPHS, **UNKNOWN_ASSISTANT},
)
@api_view(required_scopes={"GET": READ})
async def namespace_subgraphs(
    request: HttpRequest, assistant_id: str, namespace: str
) -> HttpResponse:
    """Schemas of the assistant's subgraphs under one namespace (`?recurse=true` goes deeper)."""
    return await _subgraphs(request, assistant_id, namespace)


@extend_schema(
    operation_id="assistants_versions",
    request=VersionsSerializer,
    responses={200: AssistantSerializer(many=True), **UNKNOWN_ASSISTANT},
)
@api_view(required_scopes={"POST": READ})
async def versions(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """The assistant's versions: there is one, the registered graph."""
    body = validated(VersionsSerializer, json_body(request))
    assistant = assistant_payload(resolve_assistant(assistant_id))
    version = {key: value for key, value in assistant.items() if key != "updated_at"}
    matches = all(version["metadata"].get(k) == v for k, v in (body.get("metadata") or {}).items())
    found = [version] if matches else []
    return JsonResponse(found[body["offset"] : body["offset"] + body["limit"]], safe=False)


@extend_schema(
    operation_id="assistants_set_latest",
    request=SetLatestSerializer,
    responses={200: AssistantSerializer, **UNKNOWN_ASSISTANT},
)
@api_view(required_scopes={"POST": READ})
async def set_latest(request: HttpRequest, assistant_id: str) -> HttpResponse:
    """Make a version the latest: only version 1 exists, and it already is."""
    body = validated(SetLatestSerializer, json_body(request))
    assistant = assistant_payload(resolve_assistant(assistant_id))
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
assistant_namespace_subgraphs = by_method(get=namespace_subgraphs)
assistant_versions = by_method(post=versions)
assistant_latest = by_method(post=set_latest)
