"""Threads whose checkpoints were damaged before earlier fixes (old data): a checkpoint whose
values hold keys that are not the graph's channels, or a value the serializer cannot load. Every
read of such a thread answers without a 500: what loads, with the damaged part left out, or a
JSON error that names the problem.

The damaged checkpoints are written directly through the thread graph's saver, as old versions of
the server wrote them.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from langgraph.checkpoint.base import create_checkpoint

from deerflow_site.bridge import Executor, call_sync
from runs.engine import registry
from tests.test_admin_console import root  # noqa: F401 (a fixture)
from tests.test_thread_state import Api, api, create_thread, run_graph  # noqa: F401 (fixture)
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

ECHO = {"messages": [{"role": "user", "content": "hi"}]}
#: What the serializer cannot load: msgpack's reserved byte.
UNLOADABLE = ("msgpack", b"\xc1")


class _Unloadable:
    """A value written as UNLOADABLE."""


@contextlib.contextmanager
def writing_unloadable(saver: Any) -> Iterator[None]:
    """The saver writes `_Unloadable()` values as bytes its serializer cannot load."""
    serde = saver.serde

    class Damaging:
        def dumps_typed(self, value: Any) -> tuple[str, bytes]:
            if isinstance(value, _Unloadable) or (
                isinstance(value, dict)
                and any(
                    isinstance(v, _Unloadable) for v in (value.get("channel_values") or {}).values()
                )
            ):
                return UNLOADABLE
            return serde.dumps_typed(value)

        def __getattr__(self, name: str) -> Any:
            return getattr(serde, name)

    saver.serde = Damaging()
    try:
        yield
    finally:
        saver.serde = serde


async def damage(
    thread_id: str, values: dict[str, Any], writes: list[tuple[str, Any]] | None = None
) -> str:
    """A new latest checkpoint of the thread's root namespace, its channels' values `values` on
    top of those of the latest one, and a task's pending `writes` on it, written through the
    `echo` graph's saver; returns its id."""
    graph = await registry.graph_for_thread("echo")
    saver = graph.checkpointer
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    latest = await saver.aget_tuple(config)
    checkpoint = create_checkpoint(latest.checkpoint, None, latest.metadata["step"] + 1)
    checkpoint["channel_values"] = {**checkpoint["channel_values"], **values}
    versions = {key: f"{999:032}.0" for key in values}
    checkpoint["channel_versions"] = {**checkpoint["channel_versions"], **versions}
    metadata = {"source": "update", "step": latest.metadata["step"] + 1, "parents": {}}
    with writing_unloadable(saver):
        written = await saver.aput(latest.config, checkpoint, metadata, versions)
        if writes:
            await saver.aput_writes(written, writes, "an-old-task")
    return written["configurable"]["checkpoint_id"]


async def echoed_thread(api: Api) -> str:  # noqa: F811 (the fixture's name)
    thread_id = await create_thread(api)
    await run_graph(thread_id, "echo", ECHO)
    return thread_id


#: Damage that loads (LangGraph leaves out what is not a channel): the damaged state is read.
LOADS = {
    "a key that is not a channel": ({"gone_channel": "kept from an old graph"}, None),
    "a pending write to a key that is not a channel": ({}, [("gone_channel", "old")]),
}
#: Damage that does not load: the state is a 409 naming the problem, the history leaves it out.
DOES_NOT_LOAD = {
    "a value the serializer cannot load": ({"messages": _Unloadable()}, None),
    "a pending write the serializer cannot load": ({}, [("messages", _Unloadable())]),
}
DAMAGES = {**LOADS, **DOES_NOT_LOAD}


def states_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [state["checkpoint"]["checkpoint_id"] for state in response.json()]


@pytest.mark.parametrize("damaged", list(DAMAGES), ids=list(DAMAGES))
async def test_every_read_of_a_damaged_thread_answers_without_a_500(
    api: Api,  # noqa: F811 (the fixture)
    root: Client,  # noqa: F811 (the fixture)
    damaged: str,
) -> None:
    thread_id = await echoed_thread(api)
    before = states_of(await api.post(f"/api/threads/{thread_id}/history", {"limit": 100}))
    damaged_id = await damage(thread_id, *DAMAGES[damaged])
    loads = damaged in LOADS

    state = await api.get(f"/api/threads/{thread_id}/state")
    at_checkpoint = await api.get(f"/api/threads/{thread_id}/state/{damaged_id}")
    for response in (state, at_checkpoint):
        if loads:
            assert response.status_code == 200, response.content
            assert response.json()["checkpoint"]["checkpoint_id"] == damaged_id
            assert [m["content"] for m in response.json()["values"]["messages"]] == [
                "hi",
                "echo: hi",
            ]
        else:
            assert response.status_code == 409, response.content
            detail = response.json()["detail"]
            assert "cannot be loaded" in detail and "invalid type Reserved" in detail, detail

    history = f"/api/threads/{thread_id}/history"
    listed = states_of(await api.post(history, {"limit": 100}))
    assert listed == ([damaged_id] if loads else []) + before
    assert states_of(await api.get(f"{history}?limit=2")) == listed[:2]
    assert states_of(await api.post(history, {"limit": 2})) == listed[:2]
    older = await api.post(history, {"before": {"checkpoint_id": damaged_id}})
    assert states_of(older) == before

    thread = await api.get(f"/api/threads/{thread_id}")
    assert thread.status_code == 200, thread.content
    search = await api.post("/api/threads/search", {"limit": 10})
    assert search.status_code == 200, search.content
    assert thread_id in [found["thread_id"] for found in search.json()]
    page = await call_sync(
        root.get, f"/admin/threads/thread/{thread_id}/change/", on=Executor.THREAD_SENSITIVE
    )
    assert page.status_code == 200


async def test_an_update_or_a_copy_of_a_thread_whose_checkpoint_does_not_load_is_a_409(
    api: Api,  # noqa: F811 (the fixture)
) -> None:
    """What loads the damaged checkpoint (a state update, from it or from an earlier one: LangGraph
    reads the latest to fork; a copy) is a 409 that names the problem, changing nothing. A run
    from it is admitted: its checkpoint exists."""
    thread_id = await echoed_thread(api)
    [readable, *_] = states_of(await api.post(f"/api/threads/{thread_id}/history", {}))
    damaged_id = await damage(thread_id, *DOES_NOT_LOAD["a value the serializer cannot load"])
    history = states_of(await api.post(f"/api/threads/{thread_id}/history", {}))
    threads = await Thread.objects.acount()

    update = {"values": {"messages": [{"role": "user", "content": "again"}]}}
    answers = [
        await api.post(f"/api/threads/{thread_id}/state", update),
        await api.post(f"/api/threads/{thread_id}/state", {**update, "checkpoint_id": readable}),
        await api.post(f"/api/threads/{thread_id}/copy"),
    ]
    for response in answers:
        assert response.status_code == 409, response.content
        assert "invalid type Reserved" in response.json()["detail"]
    assert await Thread.objects.acount() == threads
    assert states_of(await api.post(f"/api/threads/{thread_id}/history", {})) == history

    # A run from it is admitted (the checkpoint exists); it fails as it loads it.
    run = {"assistant_id": "echo", "input": None, "checkpoint_id": damaged_id}
    admitted = await api.post(f"/api/threads/{thread_id}/runs", run)
    assert admitted.status_code == 200, admitted.content
