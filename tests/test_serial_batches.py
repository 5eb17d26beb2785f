"""`SerialThread`'s batches: the calls made while the batch queued last is not yet taken by the
thread join it (one queue put, at most one wake-up of the thread), and still run one by one in
the order they were made, each failing alone; the checkpoint writes of several runs share one
batch and each run settles with its own writes' outcome."""

import functools
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deerflow_site.bridge import SerialThread
from runs.engine.serial_saver import RunWrites, defer_writes
from runs.engine.sqlite_saver import SqliteSaver, open_sqlite_saver
from tests.engine_support import Blocked, put_checkpoint, queued, root_config


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[SqliteSaver]:
    opened = await open_sqlite_saver(str(tmp_path / "checkpoints.sqlite3"), busy_timeout=5)
    yield opened
    await opened.aclose()


def _fail() -> None:
    raise LookupError("this call fails")


async def test_calls_made_while_the_thread_is_busy_are_one_batch_run_in_order() -> None:
    thread = SerialThread("test-batches")
    ran: list[object] = []
    try:
        with Blocked(thread):
            for i in range(3):
                assert thread.submit(functools.partial(ran.append, i))
            answer = await queued(thread.call(lambda: ran.append("call") or len(ran)))
            failing = await queued(thread.call(_fail))
            assert thread.submit(_fail)  # nobody waits: logged, the batch goes on
            assert thread.submit(functools.partial(ran.append, "last"))
            # One queue item for all of them (the blocking call's batch is taken already).
            assert thread._calls.qsize() == 1
        assert await answer == 4
        with pytest.raises(LookupError, match="this call fails"):
            await failing
        # A call made once the batch is taken goes to a new one, run after it.
        assert await thread.call(lambda: list(ran)) == [0, 1, 2, "call", "last"]
    finally:
        thread.stop()
        thread.join(10)


async def test_a_stop_made_while_a_batch_waits_runs_the_batch_and_refuses_later_calls() -> None:
    thread = SerialThread("test-batches-stop")
    ran: list[int] = []
    with Blocked(thread):
        assert thread.submit(functools.partial(ran.append, 1))
        answer = await queued(thread.call(lambda: ran.append(2) or "answered"))
        thread.stop()
        assert not thread.submit(functools.partial(ran.append, 3))
        with pytest.raises(RuntimeError, match="is stopped"):
            await thread.call(ran.append, 4)
    assert await answer == "answered"
    thread.join(10)
    assert not thread._thread.is_alive()
    assert ran == [1, 2]


async def test_several_runs_writes_share_one_batch_and_each_run_settles_its_own(
    saver: SqliteSaver,
) -> None:
    """Three runs write while the saver's thread is busy: their writes (the second run's
    unstorable) go as one queue item; the first and third runs settle and their checkpoints
    and writes are committed, the second run's settle raises its own write's failure."""
    runs = [RunWrites() for _ in range(3)]
    thread_ids = [f"t-{uuid.uuid4()}" for _ in runs]
    with Blocked(saver.thread):
        for i, (writes, thread_id) in enumerate(zip(runs, thread_ids, strict=True)):
            with defer_writes(writes):
                config = await put_checkpoint(saver, thread_id)  # handed over: no wait
                value: object = threading.Lock() if i == 1 else f"value {i}"
                await saver.aput_writes(config, [("channel", value)], f"task-{i}")
        assert saver.thread._calls.qsize() == 1
    await runs[0].settle()
    with pytest.raises(TypeError, match="not msgpack serializable"):
        await runs[1].settle()
    await runs[2].settle()
    for i in (0, 2):
        stored = await saver.aget_tuple(root_config(thread_ids[i]))
        assert stored is not None
        assert stored.pending_writes == [(f"task-{i}", "channel", f"value {i}")]
    # The failing run's checkpoint, handed before its failing write, is committed too.
    assert await saver.aget_tuple(root_config(thread_ids[1])) is not None
