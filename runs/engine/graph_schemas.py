"""What a compiled graph looks like: its JSON schemas (input, output, state, config, context),
its subgraphs' schemas, and its drawing (nodes and edges), as the LangGraph server answers them."""

import warnings
from typing import Any

from langgraph.channels.base import BaseChannel
from langgraph.graph import StateGraph
from pydantic import TypeAdapter

from deerflow_site.errors import Invalid
from runs.engine.serialization import to_jsonable


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
