"""A run's cancel stops it at whatever stage it arrives: before the graph starts, while it runs
(even a graph that swallows a cancellation), and not once the graph has ended (the run's end is
then written as it was); a cancellation of the run's task from outside still propagates."""

import asyncio
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.engine import executor
from runs.engine.executor import CancelSignal, _run_unless_cancelled, execute_run
from runs.models import Run
from tests.engine_support import (
    RunListener,
    claimed_run,
    fetch_run,
    fetch_thread,
    make_thread,
)
from threads.models import Thread

# --- The graph's stage, on its own ------------------------------------------------------------


async def test_a_cancel_before_the_graph_starts_never_runs_it() -> None:
    ran: list[str] = []

    async def graph() -> None:
        ran.append("graph")

    cancel = CancelSignal()
    cancel.set("rollback")

    assert await _run_unless_cancelled(graph(), cancel) == "rollback"
    assert ran == []


async def test_a_cancel_stops_the_graph_and_leaves_the_runs_task_usable() -> None:
    cancel = CancelSignal()
    started = asyncio.Event()
    tasks: list[Any] = []

    async def graph() -> None:
        tasks.append(asyncio.current_task())
        started.set()
        await asyncio.Event().wait()

    running = asyncio.create_task(_run_unless_cancelled(graph(), cancel))
    await started.wait()
    cancel.set("interrupt")

    assert await running == "interrupt"
    assert tasks[0] is not running and tasks[0].cancelled()  # the graph's own task
    assert running.cancelling() == 0


async def test_a_graph_that_swallows_a_cancellation_does_not_hold_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(executor, "CANCEL_GRACE_SECONDS", 0.05)
    cancel = CancelSignal()
    started = asyncio.Event()
    swallowed: list[str] = []

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.append("once")
        await asyncio.Event().wait()  # the second cancellation ends it

    async def after_the_run() -> str:
        action = await _run_unless_cancelled(stubborn(), cancel)
        await asyncio.sleep(0)  # the task goes on, not cancelled
        return action

    running = asyncio.create_task(after_the_run())
    await started.wait()
    cancel.set("interrupt")

    assert await asyncio.wait_for(running, 10) == "interrupt"
    assert swallowed == ["once"]


async def test_a_cancel_from_the_graphs_own_code_stops_it() -> None:
    cancel = CancelSignal()

    async def cancels_itself() -> None:
        cancel.set("interrupt")
        await asyncio.Event().wait()

    assert await asyncio.wait_for(_run_unless_cancelled(cancels_itself(), cancel), 10) == (
        "interrupt"
    )


async def test_a_cancellation_from_outside_still_propagates() -> None:
    for with_signal_too in (False, True):
        cancel = CancelSignal()
        started = asyncio.Event()

        async def graph(started: asyncio.Event = started) -> None:
            started.set()
            await asyncio.Event().wait()

        running = asyncio.create_task(_run_unless_cancelled(graph(), cancel))
        await started.wait()
        running.cancel()  # the worker torn down
        if with_signal_too:
            cancel.set("interrupt")

        with pytest.raises(asyncio.CancelledError):
            await running


async def test_a_cancel_after_the_graph_ended_cancels_nothing_after_it() -> None:
    cancel = CancelSignal()

    async def graph() -> None:
        return None

    assert await _run_unless_cancelled(graph(), cancel) == ""
    cancel.set("interrupt")
    await asyncio.sleep(0)  # the run's end goes on
    assert asyncio.current_task().cancelling() == 0


# --- A whole run ------------------------------------------------------------------------------


async def claimed_slow_run(user: Any, steps: int = 3) -> tuple[Thread, Run]:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id="slow",
        input={"steps": steps, "delay": 0.05},
        stream_mode=["custom"],
    )
    return thread, run


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer")
async def test_a_run_cancelled_before_its_graph_started_ends_interrupted(user: Any) -> None:
    thread, run = await claimed_slow_run(user)
    cancel = CancelSignal()
    cancel.set("interrupt")  # as the worker does for a run claimed with its cancel flag set

    async with RunListener(run.pk) as listener:
        await execute_run(run, cancel=cancel)
        events = await listener.until_end()

    assert (await fetch_run(run.pk)).status == Run.Status.INTERRUPTED
    assert not [e for e in events if e.event == "custom"]  # the graph never ran
    assert (await fetch_thread(thread.pk)).status == Thread.Status.IDLE  # as it was


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer")
async def test_a_cancel_arriving_while_the_runs_end_is_written_changes_nothing(
    user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, run = await claimed_slow_run(user, steps=1)
    cancel = CancelSignal()
    snapshot_of = executor.snapshot_of

    async def cancelled_meanwhile(*args: Any, **kwargs: Any) -> Any:
        cancel.set("interrupt")  # the graph has ended: the run's end is being written
        return await snapshot_of(*args, **kwargs)

    monkeypatch.setattr(executor, "snapshot_of", cancelled_meanwhile)

    outcome = await execute_run(run, cancel=cancel)

    assert outcome is not None and outcome.status == Run.Status.SUCCESS
    assert (await fetch_run(run.pk)).status == Run.Status.SUCCESS
    assert (await fetch_thread(thread.pk)).status == Thread.Status.IDLE
    assert asyncio.current_task().cancelling() == 0
