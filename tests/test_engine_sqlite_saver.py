"""The SQLite checkpoint saver (runs/engine/sqlite_saver.py): one hop per operation on a thread
of its own, writes that finish whatever happens to their caller, LangGraph's tables."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from django.db import connection
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from deerflow_site.bridge import ENGINE_THREAD, Executor, SerialThread, call_sync
from runs.engine import checkpointer
from runs.engine.checkpointer import close_checkpointer, get_checkpointer
from runs.engine.checkpoints import adelete_run_checkpoints
from runs.engine.registry import graph_for_thread, load_graph
from runs.engine.sqlite_saver import SqliteSaver, open_sqlite_saver
from tests.engine_support import (
    Blocked,
    assert_a_cancelled_write_commits,
    put_checkpoint,
    queued,
    root_config,
)

#: The tests that go through the per-loop registry need it to open this saver.
on_sqlite = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the registry opens the SQLite saver on SQLite only"
)


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[SqliteSaver]:
    opened = await open_sqlite_saver(str(tmp_path / "checkpoints.sqlite3"), busy_timeout=5)
    yield opened
    await opened.aclose()


async def test_a_write_whose_caller_is_cancelled_still_commits(saver: SqliteSaver) -> None:
    await assert_a_cancelled_write_commits(saver)


@on_sqlite
@pytest.mark.django_db(transaction=True)
async def test_a_rollback_after_a_cancelled_write_finds_the_checkpoint(
    closing_checkpointer: None,
) -> None:
    saver = await get_checkpointer()
    assert isinstance(saver, SqliteSaver)
    t = f"t-{uuid.uuid4()}"
    with Blocked(saver.thread):
        write = await queued(put_checkpoint(saver, t, run_id="run-2"))
        write.cancel()
        rollback = await queued(adelete_run_checkpoints(t, "run-2"))

    await rollback
    assert await saver.aget_tuple(root_config(t)) is None


async def test_closing_finishes_the_writes_in_flight(tmp_path: Path) -> None:
    path = str(tmp_path / "checkpoints.sqlite3")
    saver = await open_sqlite_saver(path, busy_timeout=5)
    t = f"t-{uuid.uuid4()}"
    with Blocked(saver.thread):
        write = await queued(put_checkpoint(saver, t))
        closing = await queued(saver.aclose())

    await closing
    assert (await write)["configurable"]["checkpoint_id"]
    with pytest.raises(RuntimeError, match="stopped"):
        await saver.aget_tuple(root_config(t))
    reopened = await open_sqlite_saver(path, busy_timeout=5)
    try:
        assert await reopened.aget_tuple(root_config(t)) is not None
    finally:
        await reopened.aclose()


def write_from_another_loop(thread_id: str) -> SqliteSaver:
    """A checkpoint written with the saver of a new loop on another thread; returns the saver."""

    async def write() -> SqliteSaver:
        saver = await get_checkpointer()
        await put_checkpoint(saver, thread_id)
        await close_checkpointer()
        return saver  # type: ignore[return-value]

    return asyncio.run(write())


@on_sqlite
@pytest.mark.django_db(transaction=True)
async def test_two_event_loops_have_their_own_savers_on_one_database(
    closing_checkpointer: None,
) -> None:
    mine = await get_checkpointer()
    assert isinstance(mine, SqliteSaver)
    t = f"t-{uuid.uuid4()}"

    theirs = await call_sync(write_from_another_loop, t, on=Executor.BLOCKING)

    assert theirs is not mine and theirs.conn is not mine.conn
    assert theirs.thread is mine.thread is ENGINE_THREAD  # shared, and not ended by theirs
    assert await mine.aget_tuple(root_config(t)) is not None
    assert all(not loop.is_closed() for loop in checkpointer._entries)


async def test_a_database_written_by_langgraphs_async_saver_is_read_as_it_was(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "checkpoints.sqlite3")
    t = f"t-{uuid.uuid4()}"
    async with aiosqlite.connect(path) as conn:
        theirs = AsyncSqliteSaver(conn)
        graph = (await graph_for_echo()).copy(update={"checkpointer": theirs})
        await graph.ainvoke({"messages": [{"role": "user", "content": "hi"}]}, root_config(t))
        history = [s async for s in graph.aget_state_history(root_config(t))]

    ours = await open_sqlite_saver(path, busy_timeout=5)
    try:
        graph = (await graph_for_echo()).copy(update={"checkpointer": ours})
        again = [s async for s in graph.aget_state_history(root_config(t))]
        await graph.ainvoke({"messages": [{"role": "user", "content": "more"}]}, root_config(t))
        state = await graph.aget_state(root_config(t))
    finally:
        await ours.aclose()

    assert again == history
    assert [m.content for m in state.values["messages"]] == ["hi", "echo: hi", "more", "echo: more"]


async def graph_for_echo() -> Any:
    """The `echo` graph without a checkpointer (the registry's compiled graph)."""
    return await call_sync(load_graph, "echo", on=Executor.BLOCKING)


async def test_a_failing_call_raises_in_its_caller_and_the_thread_goes_on() -> None:
    thread = SerialThread(name="test-serial")
    try:
        with pytest.raises(ZeroDivisionError):
            await thread.call(lambda: 1 / 0)
        assert await thread.call(sum, [1, 2]) == 3
    finally:
        thread.stop()
        thread.join(timeout=30)


@on_sqlite
@pytest.mark.django_db(transaction=True)
async def test_graph_for_thread_is_bound_to_the_sqlite_saver(
    closing_checkpointer: None,
) -> None:
    graph = await graph_for_thread("echo")

    assert isinstance(graph.checkpointer, SqliteSaver)
