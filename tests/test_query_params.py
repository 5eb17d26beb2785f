"""One rule for query strings on every endpoint that reads one (deerflow_site/api/query.py): a
parameter that takes one value given twice is a 422 naming it, one that takes a list repeats, and
a boolean is `true`, `false`, `1` or `0` and nothing else. The cases cover every query parameter
the OpenAPI schema documents (checked), so a new endpoint's parameters must join them."""

import json
from typing import Any

import pytest
from django.test import Client

from deerflow_site.api.query import REPEATED

# Transactions: the async views authenticate on the executor's threads, other connections.
pytestmark = pytest.mark.django_db(transaction=True)

RUN = "00000000-0000-4000-8000-000000000001"
CHECKPOINT = "00000000-0000-4000-8000-000000000002"
#: (method, path, {parameter: a valid value}) of every operation that reads a query string;
#: `{t}` is a thread of the caller's.
CASES = [
    ("get", "/api/assistants/echo/graph", {"xray": "true"}),
    ("get", "/api/assistants/echo/subgraphs", {"recurse": "true"}),
    ("get", "/api/assistants/echo/subgraphs/sub", {"recurse": "true"}),
    ("post", "/api/runs/cancel", {"action": "interrupt", "wait": "1"}),
    ("get", "/api/threads/{t}/history", {"before": CHECKPOINT, "limit": "2"}),
    ("get", "/api/threads/{t}/messages", {"after_seq": "0", "before_seq": "9", "limit": "2"}),
    ("get", "/api/threads/{t}/runs", {"limit": "1", "offset": "0", "status": "pending"}),
    ("post", f"/api/threads/{{t}}/runs/{RUN}/cancel", {"action": "interrupt", "wait": "0"}),
    (
        "get",
        f"/api/threads/{{t}}/runs/{RUN}/events",
        {"after_seq": "0", "event_types": "run.start", "limit": "2"},
    ),
    (
        "get",
        f"/api/threads/{{t}}/runs/{RUN}/messages",
        {"after_seq": "0", "before_seq": "9", "limit": "2"},
    ),
    ("get", f"/api/threads/{{t}}/runs/{RUN}/join", {"cancel_on_disconnect": "false"}),
    ("get", f"/api/threads/{{t}}/runs/{RUN}/stream", {"cancel_on_disconnect": "false"}),
    (
        "post",
        f"/api/threads/{{t}}/runs/{RUN}/stream",
        {"action": "interrupt", "cancel_on_disconnect": "0", "wait": "true"},
    ),
    ("get", "/api/threads/{t}/state", {"subgraphs": "false"}),
    ("get", f"/api/threads/{{t}}/state/{CHECKPOINT}", {"subgraphs": "1"}),
    ("get", "/api/threads/{t}/token-usage", {"include_active": "true"}),
]
#: Parameters that take a list: each occurrence is one item.
LISTS = {"select", "stream_mode"}
ONE_VALUE = [
    pytest.param(method, path, name, value, id=f"{method} {path} {name}")
    for method, path, params in CASES
    for name, value in params.items()
]
#: The boolean parameters, from the schema (checked below).
BOOLEANS = [
    pytest.param(method, path, name, id=f"{method} {path} {name}")
    for method, path, params in CASES
    for name in params
    if name in {"recurse", "wait", "cancel_on_disconnect", "subgraphs", "include_active"}
]


@pytest.fixture
def thread_id(api: Any) -> str:
    response = api.post("/api/threads", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["thread_id"]


#: Bodies the POSTs need besides their query (the caller has no pending run to cancel).
BODIES = {"/api/runs/cancel": {"status": "pending"}}


def _call(api: Any, method: str, path: str, thread_id: str, query: str) -> Any:
    url = f"{path.format(t=thread_id)}?{query}"
    if path in BODIES:
        return getattr(api, method)(url, BODIES[path], format="json")
    return getattr(api, method)(url)


def test_the_cases_are_every_query_parameter_of_the_schema() -> None:
    schema = json.loads(Client().get("/api/openapi.json").content)
    documented = {
        (method, path, parameter["name"], parameter["schema"].get("type"))
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    }
    covered = {
        (method, path.replace("{t}", "{thread_id}").replace(RUN, "{run_id}"), name)
        for method, path, params in CASES
        for name in params
    }
    covered = {
        (m, p.replace(CHECKPOINT, "{checkpoint_id}").replace("echo", "{assistant_id}"), n)
        for m, p, n in covered
    }
    covered = {(m, p.replace("subgraphs/sub", "subgraphs/{namespace}"), n) for m, p, n in covered}
    assert {(m, p, n) for m, p, n, _ in documented if n not in LISTS} == covered
    assert {n for m, p, n, kind in documented if kind == "boolean"} == {
        name for _, _, name in (param.values for param in BOOLEANS)
    }
    assert {n for m, p, n, kind in documented if kind == "array"} == LISTS


@pytest.mark.parametrize(("method", "path", "name", "value"), ONE_VALUE)
def test_a_one_value_parameter_given_twice_is_a_422_naming_it(
    api: Any, thread_id: str, method: str, path: str, name: str, value: str
) -> None:
    response = _call(api, method, path, thread_id, f"{name}={value}&{name}={value}")

    assert response.status_code == 422, response.content
    assert response.json()["detail"] == {name: [REPEATED]}
    once = _call(api, method, path, thread_id, f"{name}={value}")
    assert REPEATED not in once.content.decode(), once.content  # (`before` names no checkpoint)


@pytest.mark.parametrize(("method", "path", "name"), BOOLEANS)
@pytest.mark.parametrize("value", ["yes", "TRUE", "tRUE", "on", "2", "", "null"])
def test_a_boolean_parameter_takes_only_the_known_spellings(
    api: Any, thread_id: str, method: str, path: str, name: str, value: str
) -> None:
    response = _call(api, method, path, thread_id, f"{name}={value}")

    assert response.status_code == 422, response.content
    assert name in json.dumps(response.json())


@pytest.mark.parametrize(("method", "path", "name"), BOOLEANS)
@pytest.mark.parametrize("value", ["true", "false", "1", "0", "True", "False"])
def test_what_the_sdks_send_for_a_boolean_is_taken(
    api: Any, thread_id: str, method: str, path: str, name: str, value: str
) -> None:
    assert _call(api, method, path, thread_id, f"{name}={value}").status_code != 422


def test_a_list_parameter_repeats_and_an_unknown_one_is_ignored(api: Any, thread_id: str) -> None:
    response = api.get(f"/api/threads/{thread_id}/runs?select=run_id&select=status&x=1&x=2")

    assert response.status_code == 200, response.content
    state = api.get(f"/api/threads/{thread_id}/state?select=values&select=next")
    assert state.status_code == 200, state.content
    assert set(state.json()) == {"values", "next"}


def test_include_active_takes_the_js_spelling(api: Any, thread_id: str) -> None:
    for value, expected in (("1", 200), ("0", 200), ("yes", 422)):
        response = api.get(f"/api/threads/{thread_id}/token-usage?include_active={value}")
        assert response.status_code == expected, (value, response.content)


def test_xray_is_spelled_as_the_sdks_spell_it(api: Any) -> None:
    assert api.get("/api/assistants/echo/graph?xray=true").status_code == 200
    assert api.get("/api/assistants/echo/graph?xray=True").status_code == 200
    assert api.get("/api/assistants/echo/graph?xray=2").status_code == 200
    assert api.get("/api/assistants/echo/graph?xray=TRUE").status_code == 422
