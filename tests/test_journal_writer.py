"""The journal is written off the graph's path: a stalled database delays the journal and the
run's end, never the stream; a batch is written once full or after the flush delay, and what a
run shorter than that recorded is left for its end."""

import asyncio
import threading
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.engine.executor import CancelSignal, execute_run
from runs.engine.journal import JournalWriter
from runs.journal.catalog import EventType
from runs.journal.lifecycle import run_started
from runs.journal.store import JournalEntry, ModelUsage
from runs.models import Run, RunEvent
from tests.engine_support import RunListener, claimed_run, make_thread, pending_run
from tests.waiting import read_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer"),
]

STEPS = 5


async def test_a_stalled_database_never_stalls_a_started_runs_stream(
    user: Any, settings: Any
) -> None:
    """Once a run has read its thread's checkpoint (on SQLite the saver's calls share the
    engine's thread), the engine's database thread held up holds up neither its events nor its
    checkpoint writes (handed over, not waited for): only its journal and its end wait."""
    settings.JOURNAL_FLUSH_SECONDS = 0.01  # the writer tries to write at once, and waits
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id="slow",
        input={"steps": STEPS, "delay": 0.01, "messages": [{"role": "user", "content": "hi"}]},
        stream_mode=["custom"],
    )
    # The engine's database calls run one at a time on its thread: this one holds it.
    holding, released = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        released.wait(60)

    held: asyncio.Future[None] | None = None
    try:
        async with RunListener(run.pk) as listener:
            execution = asyncio.create_task(execute_run(run, cancel=CancelSignal()))
            ticks = [(await listener.until("custom")).data["tick"]]
            held = asyncio.ensure_future(call_sync(hold, on=Executor.ENGINE))
            await call_sync(holding.wait, 60, on=Executor.BLOCKING)
            ticks += [(await listener.until("custom")).data["tick"] for _ in range(STEPS - 1)]
            waiting_on_the_database = not execution.done()
            released.set()
            await execution
            await listener.until_end()
    finally:
        released.set()
        if held is not None:
            await held

    assert ticks == list(range(1, STEPS + 1))
    assert waiting_on_the_database
    journal = [
        e async for e in RunEvent.objects.filter(run=run).order_by("seq").values_list("event_type")
    ]
    assert [t for (t,) in journal] == [
        EventType.RUN_START,
        EventType.HUMAN_INPUT,
        EventType.RUN_END,
    ]


async def _a_run(user: Any) -> Any:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    return await call_sync(pending_run, thread=thread, user=user, on=Executor.THREAD_SENSITIVE)


async def _journal_rows(run: Any) -> int:
    return await RunEvent.objects.filter(run=run).acount()


async def _until_journal_rows(run: Any, count: int) -> None:
    """Until the run's journal holds `count` rows (the writer's timer and task run meanwhile)."""
    await read_until(
        lambda: _journal_rows(run), f"{count} journal rows", accept=lambda rows: rows >= count
    )


async def test_a_run_shorter_than_the_flush_delay_leaves_its_events_for_its_end(
    user: Any, settings: Any
) -> None:
    settings.JOURNAL_FLUSH_SECONDS = 60.0
    run = await _a_run(user)
    writer = JournalWriter(run)
    writer.start()
    writer.add(run_started(run))

    unwritten = await writer.close()

    assert [e.event_type for e in unwritten.entries] == [EventType.RUN_START]
    assert await _journal_rows(run) == 0


async def test_a_full_batch_is_written_at_once(user: Any, settings: Any) -> None:
    settings.JOURNAL_FLUSH_SECONDS = 60.0
    settings.JOURNAL_BATCH_SIZE = 2
    run = await _a_run(user)
    writer = JournalWriter(run)
    writer.start()
    writer.add(run_started(run))
    writer.add(run_started(run))

    unwritten = await writer.close()  # after the write in progress

    assert not unwritten
    assert await _journal_rows(run) == 2


async def test_a_batch_the_database_refuses_is_written_made_storable(
    user: Any, settings: Any
) -> None:
    # A token count beyond 64 bits (OverflowError on SQLite, out of range on PostgreSQL) and
    # NaN: written with the count clamped and NaN as null, not kept and refused at every write.
    settings.JOURNAL_FLUSH_SECONDS = 60.0
    settings.JOURNAL_BATCH_SIZE = 2
    run = await _a_run(user)
    writer = JournalWriter(run)
    writer.start()
    writer.add(JournalEntry(EventType.TOOL_RESULT, content={"score": float("nan")}))
    writer.add(run_started(run), usage=("model", ModelUsage(input_tokens=2**70, llm_calls=1)))

    unwritten = await writer.close()  # after the write in progress

    assert not unwritten
    assert await _journal_rows(run) == 2
    stored = await Run.objects.aget(pk=run.pk)
    assert (stored.input_tokens, stored.llm_calls) == (2**63 - 1, 1)


async def test_events_are_written_after_the_flush_delay_from_any_thread(
    user: Any, settings: Any
) -> None:
    settings.JOURNAL_FLUSH_SECONDS = 0.01
    run = await _a_run(user)
    writer = JournalWriter(run)
    writer.start()
    writer.add(run_started(run))
    await _until_journal_rows(run, 1)
    # A sync node's callbacks add from the node's thread.
    await call_sync(writer.add, run_started(run), on=Executor.BLOCKING)
    await _until_journal_rows(run, 2)

    assert not await writer.close()
