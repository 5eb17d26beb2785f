"""The journal is written off the graph's path: a stalled database delays the journal and the
run's end, never the stream."""

import asyncio
import threading
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.engine.executor import CancelSignal, execute_run
from runs.journal.catalog import EventType
from runs.models import RunEvent
from tests.engine_support import (  # noqa: F401 - fixtures
    RunListener,
    claim_next,
    closing_checkpointer,
    fresh_channel_layer,
    make_thread,
    pending_run,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer"),
]

STEPS = 5


async def test_a_stalled_database_never_stalls_the_stream(user: Any, settings: Any) -> None:
    settings.JOURNAL_FLUSH_SECONDS = 0.01  # the writer tries to write at once, and waits
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    run = await call_sync(
        pending_run,
        thread=thread,
        user=user,
        graph_id="slow",
        input={"steps": STEPS, "delay": 0.01, "messages": [{"role": "user", "content": "hi"}]},
        stream_mode=["custom"],
        on=Executor.THREAD_SENSITIVE,
    )
    claimed = await call_sync(claim_next, worker_id="test-worker", on=Executor.THREAD_SENSITIVE)
    # The engine's database calls run one at a time on its thread: this one holds it.
    holding, released = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        released.wait(60)

    held = asyncio.ensure_future(call_sync(hold, on=Executor.ENGINE))
    await call_sync(holding.wait, 60, on=Executor.BLOCKING)

    try:
        async with RunListener(run.pk) as listener:
            execution = asyncio.create_task(execute_run(claimed, cancel=CancelSignal()))
            ticks = [(await listener.until("custom")).data["tick"] for _ in range(STEPS)]
            waiting_on_the_database = not execution.done()
            released.set()
            await execution
            await listener.until_end()
    finally:
        released.set()
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
