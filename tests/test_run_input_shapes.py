"""A run's input that its graph cannot take as a whole (a string, a number, an array, a boolean
for a StateGraph of named fields) is a 422 naming `input` at admission, on every create endpoint
of the live server, and changes nothing.

Before, it was admitted and the run failed at its first step with LangGraph's "Expected dict,
got ...". The reference server admits any JSON value too (its run schema's input is anyOf every
JSON type) and fails the run the same way; graphs that do take other values still get them: the
functional API's entrypoint any value, a StateGraph of one unnamed value what its reducer takes.
"""

import json
from typing import Any

import httpx
import pytest

from runs.models import Run
from tests.fixtures import CREATE_PATHS, post_create, thread_after_a_run

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

ONE_VALUE_GRAPH = """
import operator
from typing import Annotated

from langgraph.graph import START, StateGraph

builder = StateGraph(Annotated[list, operator.add])
builder.add_node("tick", lambda items: ["tick"])
builder.add_edge(START, "tick")
graph = builder.compile()
"""

NOT_OBJECTS = ("hello", "", 5, 1.5, 0, ["a"], [], True, False)
HELLO = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def daphne_server(live_server_factory: Any, tmp_path_factory: Any) -> Any:
    """A live server with the built-in graphs, `functional` (the functional API) and
    `one_value` (a StateGraph whose state is one list)."""
    folder = tmp_path_factory.mktemp("graphs")
    (folder / "one_value.py").write_text(ONE_VALUE_GRAPH)
    config = folder / "langgraph.json"
    graphs = {
        "functional": "tests.final_state_graphs:functional",
        "one_value": "./one_value.py:graph",
    }
    config.write_text(json.dumps({"graphs": graphs}))
    server = live_server_factory.start(DEERFLOW_LANGGRAPH_CONFIG=str(config))
    yield server
    server.stop()


def _input_detail(detail: Any) -> Any:
    """What a 422's detail says of the field `input` (None when it does not name it)."""
    return detail.get("input") if isinstance(detail, dict) else None


@pytest.mark.parametrize("path", CREATE_PATHS)
def test_an_input_that_is_not_an_object_is_422_and_changes_nothing(daphne_server, headers, path):
    with httpx.Client(base_url=daphne_server.api_url, headers=headers, timeout=30) as client:
        thread_id, state = thread_after_a_run(client, "echo", HELLO)
        runs_before = Run.objects.count()
        wrong_answers = []
        for value in NOT_OBJECTS:
            status, detail = post_create(
                client, path, thread_id, {"assistant_id": "echo", "input": value}
            )
            said = _input_detail(detail)
            if status != 422 or not said or "object" not in said[0]:
                wrong_answers.append((value, status, said))
        assert wrong_answers == []
        assert Run.objects.count() == runs_before
        assert client.get(f"/threads/{thread_id}/state").json() == state


def test_a_null_or_absent_input_and_a_command_with_any_input_still_run(daphne_server, headers):
    with httpx.Client(base_url=daphne_server.api_url, headers=headers, timeout=30) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        wait = f"/threads/{thread_id}/runs/wait"
        assert client.post(wait, json={"assistant_id": "echo", "input": HELLO}).status_code == 200
        for body in (
            {"input": None},
            {},
            # A command replaces the input (LangGraph runs the command; so does the reference).
            {"input": "ignored", "command": {"update": HELLO}},
        ):
            response = client.post(wait, json={"assistant_id": "echo", **body})
            assert response.status_code == 200, (body, response.text)
            assert "__error__" not in response.json(), (body, response.text)


def test_graphs_that_take_other_values_still_get_them(daphne_server, headers):
    with httpx.Client(base_url=daphne_server.api_url, headers=headers, timeout=30) as client:
        for value in ("hello", 5, ["a"], True):
            response = client.post(
                "/runs/wait", json={"assistant_id": "functional", "input": value}
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"got": value, "previous": None}

        thread_id = client.post("/threads", json={}).json()["thread_id"]
        wait = f"/threads/{thread_id}/runs/wait"
        taken = client.post(wait, json={"assistant_id": "one_value", "input": ["a"]})
        assert taken.status_code == 200, taken.text
        assert taken.json() == ["a", "tick"]
        # A value its reducer (list + value) refuses is refused the same way, changing nothing.
        for value in ("a", {"a": 1}, 5):
            status, detail = post_create(
                client, wait, thread_id, {"assistant_id": "one_value", "input": value}
            )
            said = _input_detail(detail)
            assert status == 422 and said and "concatenate" in said[0], (value, status, said)
        again = client.post(wait, json={"assistant_id": "one_value", "input": ["b"]})
        assert again.json() == ["a", "tick", "b", "tick"]
