"""A run's checkpoint writes are handed to the saver's thread without a wait each
(`serial_saver.defer_writes`): what is stored is what awaiting each stored, a write that fails
fails its run (and no other), and a run's end is recorded only once its writes are committed.
Real savers on the test database, runs through the engine."""

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from deerflow_site.bridge import Executor, call_sync
from runs.engine import executor
from runs.engine.checkpointer import get_checkpointer
from runs.engine.executor import CancelSignal, execute_run
from runs.engine.registry import graph_for_thread
from runs.engine.serial_saver import RunWrites, defer_writes
from runs.models import Run
from tests.checkpoint_write_graphs import GRAPHS
from tests.engine_support import (
    RunListener,
    claimed_run,
    fetch_run,
    make_thread,
)
from threads.models import Thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer", "test_graphs"),
]

#: How long a run's end is given to be (wrongly) recorded while its writes are held back.
HELD_SECONDS = 1.0


@pytest.fixture
def test_graphs(tmp_path: Path) -> Any:
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps({"graphs": GRAPHS}))
    with override_settings(LANGGRAPH_CONFIG=str(path)):
        yield


async def start(
    thread: Thread, user: Any, graph_id: str, **kwargs: Any
) -> tuple[Run, "asyncio.Task[Any]", CancelSignal]:
    """A claimed run of `graph_id`, being executed: (run, its task, its cancel signal)."""
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id=graph_id,
        **kwargs,
    )
    cancel = CancelSignal()
    return run, asyncio.create_task(execute_run(run, cancel=cancel)), cancel


async def ended_within(ending: asyncio.Event, seconds: float) -> bool:
    """Whether `ending` is set within `seconds`."""
    try:
        await asyncio.wait_for(ending.wait(), seconds)
    except TimeoutError:
        return False
    return True


def stored_counts(thread_id: str) -> tuple[int, int]:
    """(checkpoints, writes) committed for `thread_id`, read on Django's own connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", [thread_id])
        checkpoints = cursor.fetchone()[0]
        writes = "writes" if connection.vendor == "sqlite" else "checkpoint_writes"
        cursor.execute(f"SELECT count(*) FROM {writes} WHERE thread_id = %s", [thread_id])
        return checkpoints, cursor.fetchone()[0]


async def test_a_write_that_fails_fails_its_run_and_no_other(user: Any) -> None:
    failing = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    other = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    slow_run, slow_task, _ = await start(other, user, "slow", input={"steps": 3, "delay": 0.01})
    bad_run, bad_task, _ = await start(failing, user, "unstorable", input={"text": "x"})

    await asyncio.gather(bad_task, slow_task)

    bad = await fetch_run(bad_run.pk)
    assert bad.status == Run.Status.ERROR
    assert bad.error["error"] == "TypeError"
    assert "not msgpack serializable" in bad.error["message"]
    good = await fetch_run(slow_run.pk)
    assert good.status == Run.Status.SUCCESS
    graph = await graph_for_thread("slow")
    state = await graph.aget_state({"configurable": {"thread_id": other.pk}})
    assert state.values["ticks"] == [1, 2, 3]
    # The saver goes on: a later run on the failing run's saver stores its checkpoints.
    again, again_task, _ = await start(failing, user, "slow", input={"steps": 1})
    await again_task
    assert (await fetch_run(again.pk)).status == Run.Status.SUCCESS


async def test_a_failed_write_is_raised_by_the_runs_next_read_and_its_settle() -> None:
    saver = await get_checkpointer()
    writes = RunWrites()
    config = {"configurable": {"thread_id": "t-held", "checkpoint_ns": "", "checkpoint_id": "c"}}
    with defer_writes(writes):
        await saver.aput_writes(config, [("handle", threading.Lock())], "task")
        with pytest.raises(TypeError, match="not msgpack serializable"):
            for _ in range(2):  # the first read runs after the write: the second raises
                await saver.aget_tuple({"configurable": {"thread_id": "t-held"}})
    with pytest.raises(TypeError, match="not msgpack serializable"):
        await writes.settle()
    # Outside the run every call is awaited and raises its own failure, as before.
    with pytest.raises(TypeError, match="not msgpack serializable"):
        await saver.aput_writes(config, [("handle", threading.Lock())], "task")


async def test_the_stored_state_is_what_awaiting_each_write_stores(user: Any) -> None:
    deferred = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    awaited = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    kwargs = {"input": {"steps": 3}}
    run, task, _ = await start(deferred, user, "slow", **kwargs)
    await task
    assert (await fetch_run(run.pk)).status == Run.Status.SUCCESS
    graph = await graph_for_thread("slow")
    # The same graph and input with every write awaited (no run defers them).
    await graph.ainvoke(kwargs["input"], {"configurable": {"thread_id": awaited.pk}})

    def shape(thread_id: str) -> Any:
        return [
            (s.values, s.next, s.metadata["step"], s.metadata["source"], len(s.tasks))
            for s in history[thread_id]
        ]

    history = {}
    for thread_id in (deferred.pk, awaited.pk):
        config = {"configurable": {"thread_id": thread_id}}
        history[thread_id] = [s async for s in graph.aget_state_history(config)]
    assert len(history[deferred.pk]) == 6  # the input, start, three ticks, the end
    assert shape(deferred.pk) == shape(awaited.pk)
    assert await call_sync(stored_counts, deferred.pk, on=Executor.THREAD_SENSITIVE) == (
        await call_sync(stored_counts, awaited.pk, on=Executor.THREAD_SENSITIVE)
    )
    row = await call_sync(Thread.objects.get, pk=deferred.pk, on=Executor.THREAD_SENSITIVE)
    assert row.values == history[deferred.pk][0].values


@pytest.mark.parametrize("cancelled", [False, True])
async def test_a_runs_end_is_recorded_after_its_writes_are_committed(
    user: Any, monkeypatch: pytest.MonkeyPatch, cancelled: bool
) -> None:
    """The saver's thread is held while the run writes; its end must wait for the writes."""
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    at_end: list[tuple[int, int]] = []
    ending = asyncio.Event()
    loop = asyncio.get_running_loop()
    finish_run = executor.finish_run

    def counting_finish_run(**kwargs: Any) -> bool:
        at_end.append(stored_counts(thread.pk))
        loop.call_soon_threadsafe(ending.set)
        return finish_run(**kwargs)

    monkeypatch.setattr(executor, "finish_run", counting_finish_run)
    saver = await get_checkpointer()
    held = threading.Event()
    steps = 50 if cancelled else 3
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id="slow",
        input={"steps": steps, "delay": 0.02},
        stream_mode=["values", "custom"],
    )
    cancel = CancelSignal()
    async with RunListener(run.pk) as listener:
        task = asyncio.create_task(execute_run(run, cancel=cancel))
        await listener.until("custom")
        assert saver.thread.submit(lambda: held.wait(30))
        if cancelled:
            await listener.until("custom")
            cancel.set("interrupt")
        recorded = await ended_within(ending, HELD_SECONDS)
        held.set()
        await task
    assert not recorded, "the run's end was recorded while its checkpoint writes were held"
    ended = await fetch_run(run.pk)
    assert ended.status == (Run.Status.INTERRUPTED if cancelled else Run.Status.SUCCESS)
    assert at_end == [await call_sync(stored_counts, thread.pk, on=Executor.THREAD_SENSITIVE)]
