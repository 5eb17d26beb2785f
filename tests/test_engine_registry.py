"""The graph registry: built-ins, langgraph.json graphs, assistant ids and bound copies."""

import json
from pathlib import Path
from typing import Any
from uuid import uuid5

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from langgraph.pregel import Pregel

from deerflow_site.api.errors import error_status
from deerflow_site.errors import NotFound
from runs.engine.checkpointer import get_checkpointer
from runs.engine.registry import (
    ASSISTANT_NAMESPACE,
    AssistantNotFound,
    graph_for_thread,
    graph_specs,
    load_graph,
    resolve_assistant,
)

GRAPH_FILE = """
from typing import TypedDict
from langgraph.graph import StateGraph, START, END

class State(TypedDict):
    n: int

def builder():
    graph = StateGraph(State)
    graph.add_node("inc", lambda s: {"n": s["n"] + 1})
    graph.add_edge(START, "inc")
    graph.add_edge("inc", END)
    return graph

uncompiled = builder()
compiled = builder().compile()

def factory(config):
    return builder()
"""


@pytest.fixture
def langgraph_json(tmp_path: Path) -> Path:
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "counter.py").write_text(GRAPH_FILE)
    config = {
        "graphs": {
            "counter": "./graphs/counter.py:compiled",
            "counter_builder": "./graphs/counter.py:uncompiled",
            "counter_factory": "./graphs/counter.py:factory",
            "echo_again": "runs.engine.graphs.samples:echo",
        }
    }
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


def test_builtin_graphs_include_the_agent_and_the_sample_graphs() -> None:
    assert {"agent", "echo", "ask_human", "slow", "failing", "nested"} <= set(graph_specs())


def test_assistant_id_is_uuid5_of_the_graph_id() -> None:
    spec = graph_specs()["agent"]

    assert spec.assistant_id == uuid5(ASSISTANT_NAMESPACE, "agent")


def test_resolve_accepts_the_graph_name_or_the_assistant_uuid() -> None:
    spec = graph_specs()["echo"]

    assert resolve_assistant("echo") == spec
    assert resolve_assistant(str(spec.assistant_id)) == spec
    assert resolve_assistant(str(spec.assistant_id).upper()) == spec


@pytest.mark.parametrize("value", ["nope", "00000000-0000-0000-0000-000000000000", ""])
def test_unknown_assistant_is_a_not_found_error(value: str) -> None:
    with pytest.raises(AssistantNotFound) as raised:
        resolve_assistant(value)

    assert isinstance(raised.value, NotFound)
    assert error_status(raised.value)[0] == 404


def test_loaded_graph_is_compiled_once_without_a_checkpointer() -> None:
    graph = load_graph("echo")

    assert isinstance(graph, Pregel)
    assert graph.checkpointer is None
    assert load_graph("echo") is graph


@pytest.mark.parametrize("graph_id", ["counter", "counter_builder", "counter_factory"])
def test_langgraph_json_graphs_load_from_paths_relative_to_the_file(
    langgraph_json: Path, graph_id: str
) -> None:
    with override_settings(LANGGRAPH_CONFIG=str(langgraph_json)):
        graph = load_graph(graph_id)

        assert graph.invoke({"n": 1}) == {"n": 2}
        assert graph_specs()[graph_id].assistant_id == uuid5(ASSISTANT_NAMESPACE, graph_id)


def test_langgraph_json_accepts_module_paths(langgraph_json: Path) -> None:
    with override_settings(LANGGRAPH_CONFIG=str(langgraph_json)):
        assert load_graph("echo_again") is load_graph("echo")


def test_langgraph_json_keeps_the_builtin_graphs(langgraph_json: Path) -> None:
    with override_settings(LANGGRAPH_CONFIG=str(langgraph_json)):
        assert "agent" in graph_specs()


def test_unreadable_langgraph_json_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "langgraph.json"
    path.write_text('{"graphs": ["not", "a", "mapping"]}')

    with override_settings(LANGGRAPH_CONFIG=str(path)), pytest.raises(ImproperlyConfigured):
        graph_specs()


def test_missing_graph_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "langgraph.json"
    path.write_text('{"graphs": {"ghost": "./ghost.py:graph"}}')

    with override_settings(LANGGRAPH_CONFIG=str(path)), pytest.raises(ImproperlyConfigured):
        load_graph("ghost")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closing_checkpointer")
async def test_graph_for_thread_is_bound_to_the_loops_checkpointer() -> None:
    graph = await graph_for_thread("echo")

    assert graph.checkpointer is await get_checkpointer()
    assert await graph_for_thread("echo") is graph
    assert load_graph("echo").checkpointer is None


def test_describe_agent_model_names_the_scripted_model_by_default() -> None:
    from runs.engine.graphs import describe_agent_model

    assert describe_agent_model() == "scripted (offline)"
    with override_settings(AGENT_MODEL="gpt-x", AGENT_MODEL_BASE_URL="http://127.0.0.1:9/v1"):
        assert describe_agent_model() == "openai-compatible:gpt-x@http://127.0.0.1:9/v1"


def test_agent_uses_an_openai_compatible_model_when_one_is_configured() -> None:
    from langchain_openai import ChatOpenAI

    from runs.engine.graphs.agent import chat_model

    with override_settings(AGENT_MODEL="gpt-x", AGENT_MODEL_BASE_URL="http://127.0.0.1:9/v1"):
        model: Any = chat_model()

    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "gpt-x"
    assert str(model.openai_api_base) == "http://127.0.0.1:9/v1"


@pytest.mark.django_db
def test_info_endpoint_names_the_agent_model(api: Any) -> None:
    response = api.get("/api/info")

    assert response.status_code == 200
    assert response.json()["agent_model"] == "scripted (offline)"
