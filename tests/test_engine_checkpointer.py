"""The checkpointer module: one saver per event loop, deleting and copying checkpoints."""

import asyncio
import threading
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from deerflow_site.bridge import Executor, call_sync
from runs.engine import checkpointer, serial_saver
from runs.engine.checkpointer import get_checkpointer
from runs.engine.checkpoints import (
    acopy_thread_checkpoints,
    adelete_run_checkpoints,
    adelete_thread_checkpoints,
    delete_thread_checkpoints,
)
from runs.engine.registry import graph_for_thread
from tests.engine_support import make_thread
from threads.services import delete_thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("closing_checkpointer"),
]


def fresh_id() -> str:
    """Checkpoint tables are not Django's: a flush between tests leaves them as they are."""
    return f"t-{uuid.uuid4()}"


def say(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def config(thread_id: str, run_id: str = "run-1") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "run_id": run_id}}


async def state_of(thread_id: str) -> Any:
    graph = await graph_for_thread("echo")
    return await graph.aget_state({"configurable": {"thread_id": thread_id}})


async def history_of(thread_id: str) -> list[Any]:
    graph = await graph_for_thread("echo")
    return [s async for s in graph.aget_state_history({"configurable": {"thread_id": thread_id}})]


def saver_in_new_loop() -> Any:
    """A saver made in a loop of another thread (like async_to_sync does), then closed."""
    found: list[Any] = []
    worker = threading.Thread(target=lambda: found.append(asyncio.run(get_checkpointer())))
    worker.start()
    worker.join()
    return found[0]


async def test_one_saver_per_event_loop() -> None:
    mine = await get_checkpointer()

    assert await get_checkpointer() is mine
    assert await call_sync(saver_in_new_loop, on=Executor.BLOCKING) is not mine


async def test_savers_of_closed_loops_are_dropped() -> None:
    await call_sync(saver_in_new_loop, on=Executor.BLOCKING)
    await checkpointer.close_checkpointer()

    await get_checkpointer()

    assert all(not loop.is_closed() for loop in checkpointer._entries)


async def test_concurrent_first_uses_share_one_saver() -> None:
    savers = await asyncio.gather(*(get_checkpointer() for _ in range(5)))

    assert len({id(s) for s in savers}) == 1


async def test_async_thread_delete_removes_every_checkpoint() -> None:
    t = fresh_id()
    graph = await graph_for_thread("echo")
    await graph.ainvoke(say("hi"), config(t))

    await adelete_thread_checkpoints(t)

    assert (await state_of(t)).values == {}


async def test_sync_thread_delete_removes_every_checkpoint() -> None:
    t = fresh_id()
    graph = await graph_for_thread("echo")
    await graph.ainvoke(say("hi"), config(t))

    await call_sync(delete_thread_checkpoints, t, on=Executor.THREAD_SENSITIVE)

    assert await history_of(t) == []


async def test_thread_service_delete_removes_the_threads_checkpoints(user: Any) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    graph = await graph_for_thread("echo")
    await graph.ainvoke(say("hi"), config(thread.pk))

    await call_sync(delete_thread, thread=thread, on=Executor.THREAD_SENSITIVE)

    assert await history_of(thread.pk) == []


async def test_copy_brings_every_checkpoint_to_the_new_thread() -> None:
    src, dst = fresh_id(), fresh_id()
    graph = await graph_for_thread("echo")
    await graph.ainvoke(say("one"), config(src))
    await graph.ainvoke(say("two"), config(src, "run-2"))

    await acopy_thread_checkpoints(src, dst)

    source, copy = await state_of(src), await state_of(dst)
    assert copy.values == source.values
    assert len(await history_of(dst)) == len(await history_of(src))
    await graph.ainvoke(say("three"), config(dst, "run-3"))
    assert len((await state_of(dst)).values["messages"]) == 6
    assert len((await state_of(src)).values["messages"]) == 4


async def test_copy_keeps_pending_interrupts() -> None:
    src, dst = fresh_id(), fresh_id()
    graph = await graph_for_thread("ask_human")
    await graph.ainvoke({"question": "ok?"}, config(src))

    await acopy_thread_checkpoints(src, dst)

    copy = await graph.aget_state({"configurable": {"thread_id": dst}})
    assert copy.next == ("ask",)
    assert copy.tasks[0].interrupts[0].value == {"question": "ok?"}


async def test_run_delete_removes_only_that_runs_checkpoints() -> None:
    t = fresh_id()
    graph = await graph_for_thread("echo")
    await graph.ainvoke(say("one"), config(t, "run-1"))
    kept = len(await history_of(t))
    await graph.ainvoke(say("two"), config(t, "run-2"))

    await adelete_run_checkpoints(t, "run-2")

    assert len(await history_of(t)) == kept
    assert [m.content for m in (await state_of(t)).values["messages"]] == ["one", "echo: one"]


def _keys(checkpoints: list[Any]) -> list[tuple[str, str]]:
    return [
        (c.config["configurable"]["checkpoint_ns"], c.config["configurable"]["checkpoint_id"])
        for c in checkpoints
    ]


async def _long_history(thread_id: str) -> None:
    """Three runs of the echo graph, and one checkpoint id held by three namespaces (rows a
    page boundary may fall between)."""
    graph = await graph_for_thread("echo")
    for n in range(3):
        await graph.ainvoke(say(f"message {n}"), config(thread_id, f"run-{n}"))
    saver = await get_checkpointer()
    shared = empty_checkpoint()
    for namespace in ("a", "b", "c"):
        await saver.aput(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": namespace}},
            shared,
            {"run_id": "run-x", "step": 1},
            {},
        )


async def test_a_history_longer_than_a_page_is_listed_a_page_at_a_time(monkeypatch) -> None:
    t = fresh_id()
    await _long_history(t)
    saver = await get_checkpointer()
    whole = await call_sync(
        lambda: list(saver.list({"configurable": {"thread_id": t}})), on=Executor.THREAD_SENSITIVE
    )
    assert len(whole) > 8
    monkeypatch.setattr(serial_saver, "LIST_PAGE", 2)
    sizes: list[Any] = []
    listing = saver.list

    def list_recording(config: Any, **kwargs: Any) -> Any:
        if "checkpoint_id" not in config["configurable"]:  # a page, not a page's ties
            sizes.append(kwargs.get("limit"))
        return listing(config, **kwargs)

    monkeypatch.setattr(saver, "list", list_recording)

    paged = [c async for c in saver.alist({"configurable": {"thread_id": t}})]
    first_five = [c async for c in saver.alist({"configurable": {"thread_id": t}}, limit=5)]

    # The same checkpoints in the same order (rows sharing an id come in any order, as in one
    # call), each page read with a limit: never the whole history in one call.
    ids = [key[1] for key in _keys(paged)]
    assert ids == sorted(ids, reverse=True) == [key[1] for key in _keys(whole)]
    assert sorted(_keys(paged)) == sorted(_keys(whole))
    assert [c.checkpoint for c in paged if c.config["configurable"]["checkpoint_ns"] == ""] == [
        c.checkpoint for c in whole if c.config["configurable"]["checkpoint_ns"] == ""
    ]
    assert len(first_five) == 5 and set(_keys(first_five)) <= set(_keys(whole))
    assert [key[1] for key in _keys(first_five)] == ids[:5]
    assert sizes and all(size is not None and size <= 2 for size in sizes)


async def test_a_copy_of_a_history_longer_than_a_page_is_whole(monkeypatch) -> None:
    src, dst = fresh_id(), fresh_id()
    await _long_history(src)
    monkeypatch.setattr(serial_saver, "LIST_PAGE", 2)

    await acopy_thread_checkpoints(src, dst)

    saver = await get_checkpointer()
    source = [c async for c in saver.alist({"configurable": {"thread_id": src}})]
    copy = [c async for c in saver.alist({"configurable": {"thread_id": dst}})]
    assert sorted(_keys(copy)) == sorted(_keys(source))
    assert (await state_of(dst)).values == (await state_of(src)).values
