"""The official langgraph_sdk reads assistants from a live daphne server."""

import pytest
from langgraph_sdk.errors import APIStatusError, NotFoundError

from runs.engine.graphs import BUILTIN_GRAPHS, SAMPLE_GRAPHS
from runs.engine.registry import assistant_id_for
from tests.fixtures import sdk_client, token_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

#: What the suite registers: the built-ins and the sample graphs (tests/settings.py).
REGISTERED_GRAPHS = {**BUILTIN_GRAPHS, **SAMPLE_GRAPHS}


@pytest.fixture
def sdk(daphne_server, user, closing):
    return sdk_client(closing, daphne_server.api_url, token_for(user))


async def test_search_finds_every_graph_and_pages(sdk):
    found = await sdk.assistants.search(limit=100)
    assert sorted(a["graph_id"] for a in found) == sorted(REGISTERED_GRAPHS)
    page = await sdk.assistants.search(limit=2, response_format="object")
    assert len(page["assistants"]) == 2
    assert page["next"] == "2"


async def test_search_filters_by_graph_id_and_count_agrees(sdk):
    [echo] = await sdk.assistants.search(graph_id="echo")
    assert echo["assistant_id"] == str(assistant_id_for("echo"))
    assert await sdk.assistants.count(graph_id="echo") == 1
    assert await sdk.assistants.count() == len(REGISTERED_GRAPHS)


async def test_get_accepts_the_uuid_or_the_graph_id(sdk):
    by_uuid = await sdk.assistants.get(str(assistant_id_for("agent")))
    assert by_uuid == await sdk.assistants.get("agent")
    assert by_uuid["name"] == "agent"
    assert by_uuid["version"] == 1


async def test_get_of_an_unknown_assistant_is_not_found(sdk):
    with pytest.raises(NotFoundError):
        await sdk.assistants.get("no-such-graph")


async def test_get_graph_with_and_without_xray(sdk):
    plain = await sdk.assistants.get_graph("nested")
    xray = await sdk.assistants.get_graph("nested", xray=True)
    assert "child" in {node["id"] for node in plain["nodes"]}
    assert "child:child_one" in {node["id"] for node in xray["nodes"]}


async def test_get_schemas_and_subgraphs(sdk):
    schemas = await sdk.assistants.get_schemas("agent")
    assert schemas["graph_id"] == "agent"
    assert "messages" in schemas["state_schema"]["properties"]
    assert list(await sdk.assistants.get_subgraphs("nested")) == ["child"]


async def test_creating_an_assistant_is_refused(sdk):
    with pytest.raises(APIStatusError) as refused:
        await sdk.assistants.create("echo", if_exists="do_nothing")
    assert refused.value.response.status_code == 405
