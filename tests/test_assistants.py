"""The assistants API through Django's test client: one read-only assistant per graph."""

import uuid

import pytest
from django.test import override_settings

from runs.engine.graphs import BUILTIN_GRAPHS, SAMPLE_GRAPHS
from runs.engine.registry import assistant_id_for
from threads.models import Thread

pytestmark = pytest.mark.django_db

#: What the suite registers: the built-ins and the sample graphs (tests/settings.py).
REGISTERED_GRAPHS = {**BUILTIN_GRAPHS, **SAMPLE_GRAPHS}

NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


def search(api, **body):
    response = api.post("/api/assistants/search", body, format="json")
    assert response.status_code == 200, response.content
    return response


def response_total(response):
    return int(response["X-Pagination-Total"])


# --- search and count -------------------------------------------------------------------------


def test_search_lists_one_assistant_per_registered_graph(api):
    found = search(api, limit=100).json()
    assert sorted(a["graph_id"] for a in found) == sorted(REGISTERED_GRAPHS)
    assert response_total(search(api, limit=1)) == len(REGISTERED_GRAPHS)


def test_an_assistant_has_the_sdk_shape(api):
    [agent] = search(api, graph_id="agent").json()
    assert agent == {
        "assistant_id": str(uuid.uuid5(NAMESPACE, "agent")),
        "graph_id": "agent",
        "config": {},
        "context": {},
        "created_at": agent["created_at"],
        "updated_at": agent["created_at"],
        "metadata": {"created_by": "system"},
        "version": 1,
        "name": "agent",
        "description": None,
    }
    assert "T" in agent["created_at"] and agent["created_at"].endswith("+00:00")


def test_search_filters_by_name_substring_case_insensitively(api):
    found = search(api, name="ASK").json()
    assert [a["graph_id"] for a in found] == ["ask_human"]


def test_search_filters_by_metadata(api):
    assert len(search(api, metadata={"created_by": "system"}, limit=100).json()) == len(
        REGISTERED_GRAPHS
    )
    assert search(api, metadata={"created_by": "someone"}).json() == []


def test_search_pages_with_pagination_headers(api):
    first = search(api, limit=2, offset=0, sort_by="graph_id", sort_order="asc")
    assert first["X-Pagination-Next"] == "2"
    second = search(api, limit=2, offset=2, sort_by="graph_id", sort_order="asc")
    names = [a["graph_id"] for a in first.json() + second.json()]
    assert names == sorted(REGISTERED_GRAPHS)[:4]
    last = search(api, limit=100, offset=len(REGISTERED_GRAPHS) - 1)
    assert "X-Pagination-Next" not in last
    assert len(last.json()) == 1


def test_search_sorts_descending(api):
    found = search(api, limit=100, sort_by="name", sort_order="desc").json()
    assert [a["name"] for a in found] == sorted(REGISTERED_GRAPHS, reverse=True)


def test_search_select_returns_only_the_chosen_fields(api):
    found = search(api, graph_id="echo", select=["assistant_id", "name"]).json()
    assert found == [{"assistant_id": str(assistant_id_for("echo")), "name": "echo"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort_by": "colour"}, "sort_by"),
        ({"sort_order": "sideways"}, "sort_order"),
        ({"metadata": [1]}, "metadata"),
        ({"select": ["nope"]}, "select"),
    ],
)
def test_search_with_a_bad_body_is_422_naming_the_field(api, body, field):
    response = api.post("/api/assistants/search", body, format="json")
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_search_with_malformed_json_is_422(api):
    response = api.post("/api/assistants/search", "{", content_type="application/json")
    assert response.status_code == 422


def test_count_counts_matching_assistants(api):
    response = api.post("/api/assistants/count", {"name": "a"}, format="json")
    assert response.status_code == 200
    assert response.json() == sum("a" in graph_id for graph_id in REGISTERED_GRAPHS)


# --- one assistant ------------------------------------------------------------------------------


def test_get_by_graph_id_and_by_uuid_is_the_same_assistant(api):
    by_name = api.get("/api/assistants/echo")
    by_uuid = api.get(f"/api/assistants/{assistant_id_for('echo')}")
    assert by_name.status_code == by_uuid.status_code == 200
    assert by_name.json() == by_uuid.json()
    assert by_name.json()["assistant_id"] == str(uuid.uuid5(NAMESPACE, "echo"))


@pytest.mark.parametrize("assistant_id", ["no-such-graph", str(uuid.uuid4()), "x" * 300])
def test_an_unknown_assistant_is_404(api, assistant_id):
    for suffix in ("", "/graph", "/schemas", "/subgraphs"):
        response = api.get(f"/api/assistants/{assistant_id}{suffix}")
        assert response.status_code == 404, suffix
        assert "detail" in response.json()


def test_graph_has_nodes_and_edges(api):
    response = api.get("/api/assistants/echo/graph")
    assert response.status_code == 200
    graph = response.json()
    assert {node["id"] for node in graph["nodes"]} == {"__start__", "echo", "__end__"}
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {
        ("__start__", "echo"),
        ("echo", "__end__"),
    }


def test_graph_with_xray_draws_subgraph_nodes(api):
    plain = api.get("/api/assistants/nested/graph").json()
    xray = api.get("/api/assistants/nested/graph?xray=true").json()
    assert "child" in {node["id"] for node in plain["nodes"]}
    assert {"child:child_one", "child:child_two"} <= {node["id"] for node in xray["nodes"]}
    assert api.get("/api/assistants/nested/graph?xray=1").json() == xray


@pytest.mark.parametrize("xray", ["deep", "%C2%B2", "%D9%A3", "100000000000000000000000", "-1"])
def test_graph_with_a_bad_xray_is_422(api, xray):
    response = api.get(f"/api/assistants/nested/graph?xray={xray}")
    assert response.status_code == 422
    assert "xray" in response.json()["detail"]


def test_schemas_describe_the_graph(api):
    response = api.get("/api/assistants/agent/schemas")
    assert response.status_code == 200
    schemas = response.json()
    assert set(schemas) == {
        "graph_id",
        "input_schema",
        "output_schema",
        "state_schema",
        "config_schema",
        "context_schema",
    }
    assert schemas["graph_id"] == "agent"
    assert "messages" in schemas["input_schema"]["properties"]
    assert "messages" in schemas["state_schema"]["properties"]
    assert schemas["context_schema"] is None


def test_schemas_list_the_state_fields_of_every_built_in_graph(api):
    # Some states are `typing.TypedDict`s, which pydantic refuses whole on Python 3.11.
    schemas = api.get("/api/assistants/ask_human/schemas").json()
    for which in ("input_schema", "output_schema", "state_schema"):
        assert set(schemas[which]["properties"]) == {"messages", "question", "answer"}, which
    assert schemas["state_schema"]["properties"]["question"] == {"type": "string"}


def test_subgraphs_lists_schemas_by_namespace(api):
    response = api.get("/api/assistants/nested/subgraphs")
    assert response.status_code == 200
    assert list(response.json()) == ["child"]
    assert set(response.json()["child"]["state_schema"]["properties"]) == {"trail"}
    assert api.get("/api/assistants/echo/subgraphs").json() == {}
    assert list(api.get("/api/assistants/nested/subgraphs/child").json()) == ["child"]


def test_versions_is_the_one_version(api):
    response = api.post("/api/assistants/echo/versions", {}, format="json")
    assert response.status_code == 200
    [version] = response.json()
    assert version["version"] == 1
    assert version["assistant_id"] == str(assistant_id_for("echo"))


def test_set_latest_accepts_only_the_existing_version(api):
    assert api.post("/api/assistants/echo/latest", {"version": 1}, format="json").status_code == 200
    response = api.post("/api/assistants/echo/latest", {"version": 2}, format="json")
    assert response.status_code == 422
    assert "version" in response.json()["detail"]


# --- writes and access --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/assistants"),
        ("patch", "/api/assistants/echo"),
        ("delete", "/api/assistants/echo"),
    ],
)
def test_assistant_writes_are_refused_with_a_json_405(api, method, path):
    response = getattr(api, method)(path, {"graph_id": "echo"}, format="json")
    assert response.status_code == 405
    assert "graph registry" in response.json()["detail"]
    assert api.get("/api/assistants/echo").status_code == 200


def test_without_credentials_it_is_401(anonymous_api):
    assert anonymous_api.get("/api/assistants/echo").status_code == 401
    assert anonymous_api.post("/api/assistants/search", {}, format="json").status_code == 401


@override_settings(SAMPLE_GRAPHS=False)
def test_sample_graphs_are_not_registered_unless_a_setting_asks(api):
    assert [a["graph_id"] for a in search(api, limit=100).json()] == ["agent"]

    response = api.post("/api/threads/t-samples-off/runs", {"assistant_id": "slow"}, format="json")

    assert response.status_code == 422, response.content
    assert "slow" in str(response.json()["detail"])
    assert not Thread.objects.filter(pk="t-samples-off").exists()


@pytest.mark.django_db(transaction=True)  # async views authenticate on their own threads
def test_assistant_routes_need_the_assistants_read_scope(api, user):
    from django.contrib.auth.models import Group

    user.groups.remove(Group.objects.get(name="api-users"))

    for response in (
        api.post("/api/assistants/search", {}, format="json"),
        api.post("/api/assistants/count", {}, format="json"),
        api.get("/api/assistants/agent"),
        api.get("/api/assistants/agent/graph"),
        api.get("/api/assistants/agent/schemas"),
    ):
        assert response.status_code == 403, response.content
        assert "assistants:read" in response.json()["detail"]
