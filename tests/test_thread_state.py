"""Thread state, history, state updates and copies through Django's async test client.

Checkpoints come from running the built-in graphs in this process on the same database; the
official SDK against a live server is in test_thread_state_sdk.py.
"""

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import AsyncClient
from django.utils import timezone
from guardian.shortcuts import assign_perm

from deerflow_site.bridge import Executor, call_sync
from runs.engine import registry
from runs.engine.checkpointer import close_checkpointer
from runs.models import Run
from tests.fixtures import token_for
from threads.models import Thread

# Graph runs write checkpoints through their own connection: test data must be committed.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

ASK = {"messages": [{"role": "user", "content": "hi"}], "question": "Which colour?"}


class Api:
    """Django's AsyncClient as one user, speaking JSON: views run on the test's event loop."""

    def __init__(self, token: str | None) -> None:
        # Per request: AsyncClient(headers=...) would put WSGI names into the ASGI scope.
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = AsyncClient()

    async def get(self, path: str) -> Any:
        return await self.client.get(path, headers=self.headers)

    async def post(self, path: str, body: Any = None, *, raw: str | None = None) -> Any:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return await self.client.post(
            path, data, content_type="application/json", headers=self.headers
        )

    async def delete(self, path: str) -> Any:
        return await self.client.delete(path, headers=self.headers)


@pytest.fixture
async def api(user) -> Any:
    yield Api(await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE))
    await close_checkpointer()


@pytest.fixture
async def other_api(other_user) -> Any:
    return Api(await call_sync(token_for, other_user, on=Executor.THREAD_SENSITIVE))


@pytest.fixture
def anonymous_api() -> Api:
    return Api(None)


async def create_thread(api: Api, **body: Any) -> str:
    response = await api.post("/api/threads", body)
    assert response.status_code == 200, response.content
    return response.json()["thread_id"]


async def run_graph(thread_id: str, graph_id: str, graph_input: Any, **configurable: Any) -> None:
    """Run a built-in graph on the thread, as a run would (graph_id stamped in metadata)."""
    thread = await Thread.objects.aget(pk=thread_id)
    thread.metadata = {**thread.metadata, "graph_id": graph_id}
    await thread.asave(update_fields=["metadata"])
    graph = await registry.graph_for_thread(graph_id)
    await graph.ainvoke(graph_input, {"configurable": {"thread_id": thread_id, **configurable}})


async def asked_thread(api: Api) -> str:
    """A thread whose `ask_human` run stopped at its interrupt."""
    thread_id = await create_thread(api)
    await run_graph(thread_id, "ask_human", ASK)
    return thread_id


async def history(api: Api, thread_id: str, **body: Any) -> list[dict]:
    response = await api.post(f"/api/threads/{thread_id}/history", body)
    assert response.status_code == 200, response.content
    return response.json()


async def share(thread_id: str, user: Any, *permissions: str) -> None:
    thread = await Thread.objects.aget(pk=thread_id)
    for permission in permissions:
        await call_sync(assign_perm, permission, user, thread, on=Executor.THREAD_SENSITIVE)


# --- GET /threads/{id}/state ------------------------------------------------------------------


async def test_state_of_a_thread_without_runs_is_empty(api):
    thread_id = await create_thread(api)
    response = await api.get(f"/api/threads/{thread_id}/state")
    assert response.status_code == 200
    assert response.json() == {
        "values": {},
        "next": [],
        "tasks": [],
        "metadata": {},
        "created_at": None,
        "checkpoint": None,
        "parent_checkpoint": None,
        "interrupts": [],
    }


async def test_state_after_an_interrupt_has_values_next_tasks_and_interrupts(api):
    thread_id = await asked_thread(api)
    state = (await api.get(f"/api/threads/{thread_id}/state")).json()
    assert state["values"]["question"] == "Which colour?"
    assert state["values"]["messages"][0]["type"] == "human"
    assert state["next"] == ["ask"]
    [task] = state["tasks"]
    assert task["name"] == "ask"
    assert task["path"] == ["__pregel_pull", "ask"]
    assert task["error"] is None
    assert task["interrupts"][0]["value"] == {"question": "Which colour?"}
    assert set(task) == {
        "id",
        "name",
        "path",
        "error",
        "interrupts",
        "checkpoint",
        "state",
        "result",
    }
    assert state["interrupts"] == task["interrupts"]
    assert state["checkpoint"]["thread_id"] == thread_id
    assert state["checkpoint"]["checkpoint_ns"] == ""
    uuid.UUID(state["checkpoint"]["checkpoint_id"])
    assert state["parent_checkpoint"]["thread_id"] == thread_id
    assert state["metadata"]["source"] == "loop"
    assert state["created_at"]


async def test_state_at_a_checkpoint_is_that_checkpoint(api):
    thread_id = await asked_thread(api)
    oldest = (await history(api, thread_id))[-1]
    checkpoint_id = oldest["checkpoint"]["checkpoint_id"]
    response = await api.get(f"/api/threads/{thread_id}/state/{checkpoint_id}")
    assert response.status_code == 200
    assert response.json()["checkpoint"] == oldest["checkpoint"]
    assert response.json()["next"] == ["__start__"]


async def test_state_at_a_checkpoint_given_in_the_body(api):
    thread_id = await asked_thread(api)
    oldest = (await history(api, thread_id))[-1]
    response = await api.post(
        f"/api/threads/{thread_id}/state/checkpoint",
        {"checkpoint": oldest["checkpoint"], "subgraphs": False},
    )
    assert response.status_code == 200
    assert response.json()["checkpoint"] == oldest["checkpoint"]


async def test_state_at_an_unknown_checkpoint_is_404(api):
    thread_id = await asked_thread(api)
    response = await api.get(f"/api/threads/{thread_id}/state/{uuid.uuid4()}")
    assert response.status_code == 404
    assert "detail" in response.json()


async def test_state_at_a_checkpoint_of_a_thread_without_runs_is_404(api):
    thread_id = await create_thread(api)
    assert (await api.get(f"/api/threads/{thread_id}/state/{uuid.uuid4()}")).status_code == 404


async def test_state_at_a_malformed_checkpoint_id_is_422(api):
    thread_id = await create_thread(api)
    response = await api.get(f"/api/threads/{thread_id}/state/not-a-checkpoint")
    assert response.status_code == 422
    assert "checkpoint_id" in response.json()["detail"]


async def test_a_checkpoint_of_another_thread_is_not_read_through_this_one(api):
    theirs = await asked_thread(api)
    checkpoint = (await api.get(f"/api/threads/{theirs}/state")).json()["checkpoint"]
    mine = await create_thread(api)
    await run_graph(mine, "echo", {"messages": [{"role": "user", "content": "x"}]})
    response = await api.post(f"/api/threads/{mine}/state/checkpoint", {"checkpoint": checkpoint})
    assert response.status_code == 404


async def test_state_subgraphs_must_be_a_boolean(api):
    thread_id = await create_thread(api)
    response = await api.get(f"/api/threads/{thread_id}/state?subgraphs=maybe")
    assert response.status_code == 422
    assert "subgraphs" in response.json()["detail"]


async def test_state_with_subgraphs_nests_the_subgraph_state_in_its_task(api):
    thread_id = await create_thread(api)
    await run_graph(thread_id, "nested", {"trail": []})
    history_ = await history(api, thread_id, limit=20)
    before_child = next(s for s in history_ if s["next"] == ["child"])
    path = f"/api/threads/{thread_id}/state/{before_child['checkpoint']['checkpoint_id']}"

    [flat] = (await api.get(path + "?subgraphs=false")).json()["tasks"]
    assert flat["name"] == "child"
    assert flat["checkpoint"]["checkpoint_ns"].startswith("child:")
    assert flat["state"] is None

    [nested] = (await api.get(path + "?subgraphs=true")).json()["tasks"]
    assert nested["checkpoint"] is None
    assert set(nested["state"]) >= {"values", "next", "tasks", "checkpoint"}


async def test_state_select_returns_only_the_selected_fields(api):
    thread_id = await asked_thread(api)
    response = await api.get(f"/api/threads/{thread_id}/state?select=next&select=values.question")
    assert response.status_code == 200
    assert response.json() == {"next": ["ask"], "values": {"question": "Which colour?"}}


async def test_state_select_of_an_unknown_field_is_422(api):
    thread_id = await create_thread(api)
    response = await api.get(f"/api/threads/{thread_id}/state?select=nonsense")
    assert response.status_code == 422
    assert "select" in response.json()["detail"]


async def test_state_metadata_never_shows_secrets_from_the_config(api):
    thread_id = await create_thread(api)
    await run_graph(
        thread_id, "echo", {"messages": [{"role": "user", "content": "x"}]}, api_key="s3"
    )
    for state in await history(api, thread_id):
        assert state["metadata"].get("api_key") in (None, "***")
        assert "s3" not in str(state)


# --- history -------------------------------------------------------------------------------


async def test_history_lists_states_newest_first(api):
    thread_id = await asked_thread(api)
    states = await history(api, thread_id)
    assert [s["next"] for s in states] == [["ask"], ["__start__"]]
    assert states[0]["parent_checkpoint"] == states[1]["checkpoint"]


async def test_history_honours_limit_and_before(api):
    thread_id = await create_thread(api)
    await run_graph(thread_id, "slow", {"steps": 3})
    everything = await history(api, thread_id, limit=100)
    assert len(await history(api, thread_id, limit=2)) == 2
    before = everything[1]["checkpoint"]
    older = await history(api, thread_id, before=before)
    assert older == everything[2:]
    assert await history(api, thread_id, before=before["checkpoint_id"]) == everything[2:]


async def test_history_filters_by_metadata(api):
    thread_id = await create_thread(api)
    await run_graph(thread_id, "slow", {"steps": 2})
    inputs = await history(api, thread_id, limit=100, metadata={"source": "input"})
    assert len(inputs) == 1
    assert inputs[0]["metadata"]["source"] == "input"


async def test_history_get_takes_limit_and_before_as_query_parameters(api):
    thread_id = await create_thread(api)
    await run_graph(thread_id, "slow", {"steps": 2})
    everything = await history(api, thread_id, limit=100)
    response = await api.get(f"/api/threads/{thread_id}/history?limit=1")
    assert response.json() == everything[:1]
    before = everything[0]["checkpoint"]["checkpoint_id"]
    response = await api.get(f"/api/threads/{thread_id}/history?before={before}")
    assert response.json() == everything[1:]


async def test_history_of_a_thread_without_runs_is_empty(api):
    assert await history(api, await create_thread(api)) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"before": 5}, "before"),
        ({"before": "not-a-checkpoint"}, "before"),
        ({"before": {}}, "before"),
        ({"before": {"configurable": {"thread_id": "t"}}}, "before"),
        ({"before": {"checkpoint_id": 5}}, "before"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"a') OR 1=1 --": 1}}, "metadata"),
        ({"checkpoint": "x"}, "checkpoint"),
    ],
)
async def test_history_with_a_bad_body_is_422_naming_the_field(api, body, field):
    thread_id = await create_thread(api)
    response = await api.post(f"/api/threads/{thread_id}/history", body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


async def test_history_get_with_a_bad_limit_is_422(api):
    thread_id = await create_thread(api)
    response = await api.get(f"/api/threads/{thread_id}/history?limit=-1")
    assert response.status_code == 422
    assert "limit" in response.json()["detail"]


# --- POST /threads/{id}/state ----------------------------------------------------------------


async def test_update_state_writes_values_and_returns_the_new_checkpoint(api):
    thread_id = await asked_thread(api)
    response = await api.post(
        f"/api/threads/{thread_id}/state", {"values": {"question": "Which size?"}}
    )
    assert response.status_code == 200
    checkpoint = response.json()["checkpoint"]
    assert checkpoint["thread_id"] == thread_id
    state = (await api.get(f"/api/threads/{thread_id}/state")).json()
    assert state["checkpoint"]["checkpoint_id"] == checkpoint["checkpoint_id"]
    assert state["values"]["question"] == "Which size?"
    assert state["metadata"]["source"] == "update"


async def test_update_state_as_a_node_moves_the_graph_on(api):
    thread_id = await asked_thread(api)
    response = await api.post(
        f"/api/threads/{thread_id}/state",
        {"values": {"answer": "blue"}, "as_node": "ask"},
    )
    assert response.status_code == 200
    state = (await api.get(f"/api/threads/{thread_id}/state")).json()
    assert state["next"] == ["finish"]
    assert state["values"]["answer"] == "blue"


async def test_update_state_keeps_the_thread_row_in_step(api):
    thread_id = await asked_thread(api)
    await api.post(
        f"/api/threads/{thread_id}/state",
        {"values": {"answer": "blue"}, "as_node": "finish"},
    )
    thread = (await api.get(f"/api/threads/{thread_id}")).json()
    assert thread["status"] == "idle"
    assert thread["values"]["answer"] == "blue"
    assert thread["interrupts"] == {}
    assert thread["state_updated_at"] is not None


async def test_update_state_while_interrupts_remain_leaves_the_thread_interrupted(api):
    thread_id = await asked_thread(api)
    await api.post(f"/api/threads/{thread_id}/state", {"values": {"question": "?"}})
    thread = (await api.get(f"/api/threads/{thread_id}")).json()
    assert thread["status"] == "interrupted"
    assert thread["values"]["question"] == "?"


async def test_update_state_at_a_checkpoint_forks_from_it(api):
    thread_id = await asked_thread(api)
    first = (await history(api, thread_id))[-1]["checkpoint"]
    response = await api.post(
        f"/api/threads/{thread_id}/state",
        {"values": {"question": "forked"}, "checkpoint": first},
    )
    assert response.status_code == 200
    state = (await api.get(f"/api/threads/{thread_id}/state")).json()
    assert state["parent_checkpoint"]["checkpoint_id"] == first["checkpoint_id"]


async def test_update_state_at_an_unknown_checkpoint_is_404_and_writes_nothing(api):
    thread_id = await asked_thread(api)
    before = await history(api, thread_id, limit=100)
    response = await api.post(
        f"/api/threads/{thread_id}/state",
        {"values": {"question": "x"}, "checkpoint_id": str(uuid.uuid4())},
    )
    assert response.status_code == 404
    assert await history(api, thread_id, limit=100) == before


async def test_update_state_as_an_unknown_node_is_422(api):
    thread_id = await asked_thread(api)
    response = await api.post(f"/api/threads/{thread_id}/state", {"values": {}, "as_node": "nope"})
    assert response.status_code == 422
    assert "as_node" in response.json()["detail"]


async def test_update_state_with_values_the_state_rejects_is_4xx(api):
    thread_id = await asked_thread(api)
    response = await api.post(
        f"/api/threads/{thread_id}/state",
        {"values": {"messages": [{"role": "no-such-role", "content": 1}]}},
    )
    assert response.status_code in (400, 422)
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"values": "text"}, "values"),
        ({"values": [1, 2]}, "values"),
        ({"values": {}, "as_node": 5}, "as_node"),
        ({"values": {}, "checkpoint_id": "nope"}, "checkpoint_id"),
        ({"values": {}, "checkpoint": []}, "checkpoint"),
    ],
)
async def test_update_state_with_a_bad_body_is_422_naming_the_field(api, body, field):
    thread_id = await asked_thread(api)
    response = await api.post(f"/api/threads/{thread_id}/state", body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


async def test_update_state_in_an_unknown_subgraph_is_422_naming_the_checkpoint(api):
    thread_id = await asked_thread(api)
    response = await api.post(
        f"/api/threads/{thread_id}/state",
        {"values": {"question": "x"}, "checkpoint": {"checkpoint_ns": "nowhere"}},
    )
    assert response.status_code == 422
    assert "checkpoint" in response.json()["detail"]


async def test_update_state_with_malformed_json_is_422(api):
    thread_id = await create_thread(api)
    response = await api.post(f"/api/threads/{thread_id}/state", raw="{nope")
    assert response.status_code == 422
    assert "Malformed JSON" in response.json()["detail"]


async def test_update_state_of_a_thread_without_a_graph_is_400(api):
    thread_id = await create_thread(api)
    response = await api.post(f"/api/threads/{thread_id}/state", {"values": {"a": 1}})
    assert response.status_code == 400
    assert "graph" in response.json()["detail"]


@pytest.mark.parametrize("status", ["pending", "running"])
async def test_update_state_while_a_run_is_active_is_409(api, user, status):
    thread_id = await asked_thread(api)
    await Run.objects.acreate(
        thread_id=thread_id,
        user=user,
        assistant_id=registry.assistant_id_for("ask_human"),
        graph_id="ask_human",
        status=status,
        run_at=timezone.now(),
    )
    before = await history(api, thread_id, limit=100)
    response = await api.post(f"/api/threads/{thread_id}/state", {"values": {"a": 1}})
    assert response.status_code == 409
    assert await history(api, thread_id, limit=100) == before


async def test_while_a_state_update_holds_the_thread_no_run_starts_and_it_stays(api):
    """An update under way (its lease, `state_updating_until`, in the future) keeps runs of
    every multitask strategy, the thread's deletion and another update out (409); an expired
    lease (a process that died mid-update) keeps nothing out."""
    thread_id = await asked_thread(api)
    later = timezone.now() + timedelta(minutes=5)
    await Thread.objects.filter(pk=thread_id).aupdate(state_updating_until=later)
    before = await history(api, thread_id, limit=100)

    for strategy in ("reject", "enqueue", "interrupt", "rollback"):
        body = {"assistant_id": "ask_human", "input": ASK, "multitask_strategy": strategy}
        response = await api.post(f"/api/threads/{thread_id}/runs", body)
        assert response.status_code == 409, (strategy, response.content)
        assert "state is being updated" in response.json()["detail"]
    assert (await api.post("/api/runs/batch", [])).status_code == 200  # other threads: free
    assert (await api.delete(f"/api/threads/{thread_id}")).status_code == 409
    assert (await api.post("/api/threads/prune", {"thread_ids": [thread_id]})).json() == {
        "pruned_count": 0
    }
    response = await api.post(f"/api/threads/{thread_id}/state", {"values": {"a": 1}})
    assert response.status_code == 409
    assert not await Run.objects.filter(thread_id=thread_id).aexists()
    assert await history(api, thread_id, limit=100) == before

    earlier = timezone.now() - timedelta(seconds=1)
    await Thread.objects.filter(pk=thread_id).aupdate(state_updating_until=earlier)
    response = await api.post(f"/api/threads/{thread_id}/state", {"values": {"a": 1}})
    assert response.status_code == 200, response.content
    thread = await Thread.objects.aget(pk=thread_id)
    assert thread.state_updating_until is None  # released by the update that took it over


async def test_update_state_needs_the_change_permission(api, other_api, other_user):
    thread_id = await asked_thread(api)
    await share(thread_id, other_user, "view_thread")
    assert (await other_api.get(f"/api/threads/{thread_id}/state")).status_code == 200
    response = await other_api.post(
        f"/api/threads/{thread_id}/state", {"values": {"question": "x"}}
    )
    assert response.status_code == 403


# --- copy -------------------------------------------------------------------------------------


async def test_copy_makes_a_thread_owned_by_the_caller_with_the_same_state(
    api, other_api, other_user
):
    thread_id = await asked_thread(api)
    await share(thread_id, other_user, "view_thread")
    response = await other_api.post(f"/api/threads/{thread_id}/copy")
    assert response.status_code == 200
    copy = response.json()
    assert copy["thread_id"] != thread_id
    assert (await Thread.objects.aget(pk=copy["thread_id"])).owner_id == other_user.pk
    assert copy["metadata"] == {"graph_id": "ask_human"}
    assert copy["status"] == "interrupted"
    original_state = (await api.get(f"/api/threads/{thread_id}/state")).json()
    copied_state = (await other_api.get(f"/api/threads/{copy['thread_id']}/state")).json()
    assert copied_state["values"] == original_state["values"]
    assert copied_state["next"] == original_state["next"]
    assert copied_state["checkpoint"]["thread_id"] == copy["thread_id"]
    assert len(await history(other_api, copy["thread_id"])) == len(await history(api, thread_id))


async def test_copy_leaves_the_original_untouched(api):
    thread_id = await asked_thread(api)
    before = await history(api, thread_id, limit=100)
    copy_id = (await api.post(f"/api/threads/{thread_id}/copy")).json()["thread_id"]
    await api.post(f"/api/threads/{copy_id}/state", {"values": {"question": "copy"}})
    assert await history(api, thread_id, limit=100) == before
    assert (await api.get(f"/api/threads/{copy_id}/state")).json()["values"]["question"] == "copy"


async def test_copy_of_a_thread_without_runs_is_an_empty_thread(api):
    thread_id = await create_thread(api, metadata={"topic": "t"})
    copy = (await api.post(f"/api/threads/{thread_id}/copy")).json()
    assert copy["metadata"] == {"topic": "t"}
    assert copy["status"] == "idle"
    assert (await api.get(f"/api/threads/{copy['thread_id']}/state")).json()["checkpoint"] is None


async def test_copy_of_a_busy_thread_is_not_busy(api, user):
    thread_id = await asked_thread(api)
    await Thread.objects.filter(pk=thread_id).aupdate(status="busy")
    copy = (await api.post(f"/api/threads/{thread_id}/copy")).json()
    assert copy["status"] == "interrupted"


async def test_copy_of_a_thread_whose_graph_is_gone_still_copies_it(api):
    thread_id = await asked_thread(api)
    await Thread.objects.filter(pk=thread_id).aupdate(
        metadata={"graph_id": "retired"}, status="interrupted"
    )
    response = await api.post(f"/api/threads/{thread_id}/copy")
    assert response.status_code == 200
    assert response.json()["status"] == "interrupted"
    assert await Thread.objects.acount() == 2


# --- access and errors ------------------------------------------------------------------------


async def test_state_of_a_thread_whose_graph_is_not_registered_is_400(api):
    thread_id = await asked_thread(api)
    await Thread.objects.filter(pk=thread_id).aupdate(metadata={"graph_id": "retired"})
    response = await api.get(f"/api/threads/{thread_id}/state")
    assert response.status_code == 400
    assert "retired" in response.json()["detail"]


async def test_a_graph_id_patched_to_a_non_string_is_400_not_a_crash(api):
    thread_id = await create_thread(api, metadata={"graph_id": ["echo"]})
    response = await api.post(f"/api/threads/{thread_id}/state", {"values": {}})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "state"),
        ("get", f"state/{uuid.uuid4()}"),
        ("post", "state"),
        ("get", "history"),
        ("post", "history"),
        ("post", "copy"),
    ],
)
async def test_another_users_thread_is_404(api, other_api, method, path):
    thread_id = await asked_thread(other_api)
    body = {"values": {"question": "mine now"}} if path == "state" else {}
    path = f"/api/threads/{thread_id}/{path}"
    response = await (api.get(path) if method == "get" else api.post(path, body))
    assert response.status_code == 404
    assert await Thread.objects.acount() == 1


@pytest.mark.parametrize("path", ["state", "history", "copy"])
async def test_a_bad_thread_id_is_422(api, path):
    response = await api.post(f"/api/threads/bad%20id/{path}", {})
    assert response.status_code == 422
    assert "thread_id" in response.json()["detail"]


async def test_an_unknown_thread_is_404(api):
    assert (await api.get("/api/threads/nope/state")).status_code == 404


async def test_without_credentials_it_is_401(anonymous_api, api):
    thread_id = await create_thread(api)
    assert (await anonymous_api.get(f"/api/threads/{thread_id}/state")).status_code == 401


async def test_an_unsupported_method_is_a_json_405(api):
    thread_id = await create_thread(api)
    response = await api.delete(f"/api/threads/{thread_id}/history")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, POST"  # HEAD answers as GET, as on DRF's views
    assert "detail" in response.json()
