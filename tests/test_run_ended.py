"""`run_ended`: every ended run reaches every receiver, in the run's own task, robustly."""

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from runs.engine.signals import InlineSignal, run_ended
from runs.engine.worker import RunWorker
from runs.models import Run
from tests.engine_support import wait_for_status
from tests.test_worker_loop import queue_run, start_worker  # noqa: F401

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer"),
]


class Receivers:
    """Receivers connected to `run_ended` for one test: two that fail, two that record."""

    def __init__(self) -> None:
        self.seen_async: list[Any] = []
        self.seen_sync: list[Any] = []
        self.ended = asyncio.Queue[Any]()

    async def failing_async(self, sender: Any, *, run: Run, **kwargs: Any) -> None:
        raise RuntimeError("an async receiver failed")

    def failing_sync(self, sender: Any, *, run: Run, **kwargs: Any) -> None:
        raise RuntimeError("a sync receiver failed")

    def recording_sync(self, sender: Any, *, run: Run, **kwargs: Any) -> None:
        self.seen_sync.append(run.pk)

    async def recording_async(self, sender: Any, *, run: Run, **kwargs: Any) -> None:
        self.seen_async.append(run.pk)
        await self.ended.put(run.pk)


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    connected = Receivers()
    names = ("failing_async", "failing_sync", "recording_async", "recording_sync")
    for name in names:
        run_ended.connect(getattr(connected, name), weak=False, dispatch_uid=f"test-{name}")
    try:
        yield connected
    finally:
        for name in names:
            run_ended.disconnect(dispatch_uid=f"test-{name}")


async def test_failing_receivers_stop_neither_the_others_nor_the_worker(
    user: Any,
    start_worker: Any,  # noqa: F811
    receivers: Receivers,
) -> None:
    await start_worker()

    for _ in range(3):  # one after another: the worker goes on claiming after each failure
        run = await queue_run(user, input={})
        assert await asyncio.wait_for(receivers.ended.get(), 10) == run.pk
        assert (await wait_for_status(run.pk, Run.Status.SUCCESS)).pk == run.pk

    assert receivers.seen_async == receivers.seen_sync
    assert len(set(receivers.seen_async)) == 3


async def test_a_receivers_failure_is_logged_once_with_its_traceback_and_run(
    user: Any, receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    run = await queue_run(user, input={})
    worker = RunWorker(concurrency=1)
    task = asyncio.create_task(worker.run())
    assert await asyncio.wait_for(receivers.ended.get(), 10) == run.pk
    worker.request_stop()
    await asyncio.wait_for(task, 30)  # the shutdown waits for the run's receivers

    failures = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert sorted((r.getMessage().split(":")[0], str(r.exc_info[1])) for r in failures) == [
        (f"run {run.pk}", "a sync receiver failed"),
        (f"run {run.pk}", "an async receiver failed"),
    ]


async def test_a_lone_receiver_runs_in_the_runs_own_task_once_its_slot_is_free(
    user: Any,
    start_worker: Any,  # noqa: F811
) -> None:
    from runs.after_run import on_run_ended

    worker = await start_worker()
    seen: dict[Any, tuple[str, bool]] = {}
    ended = asyncio.Event()

    async def receiver(sender: Any, *, run: Run, **kwargs: Any) -> None:
        task = asyncio.current_task()
        seen[run.pk] = (task.get_name() if task else "", run.pk in worker.active_run_ids)
        ended.set()

    # The app's receiver makes way for this one: a single async receiver, as in production.
    run_ended.disconnect(dispatch_uid="runs.after_run")
    run_ended.connect(receiver, weak=False, dispatch_uid="test-lone")
    try:
        run = await queue_run(user, input={})
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        run_ended.disconnect(dispatch_uid="test-lone")
        run_ended.connect(on_run_ended, dispatch_uid="runs.after_run")

    # No task of its own, and the slot was freed before.
    assert seen == {run.pk: (f"run-{run.pk}", False)}


@override_settings(WORKER_SHUTDOWN_SECONDS=5.0)
async def test_stopping_worker_waits_for_a_run_ended_receiver_still_working(user: Any) -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    finished: list[Any] = []

    async def slow_receiver(sender: Any, *, run: Run, **kwargs: Any) -> None:
        started.set()
        await release.wait()
        finished.append(run.pk)

    run_ended.connect(slow_receiver, weak=False, dispatch_uid="test-slow")
    try:
        run = await queue_run(user, input={})
        worker = RunWorker(concurrency=2)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)

        worker.request_stop()
        await asyncio.sleep(0)  # the shutdown is under way, the receiver still waits
        assert not task.done()
        release.set()
        await asyncio.wait_for(task, 10)
    finally:
        run_ended.disconnect(dispatch_uid="test-slow")

    assert finished == [run.pk]


async def test_inline_signal_keeps_asend_robusts_contract() -> None:
    signal = InlineSignal()
    order: list[str] = []
    first_waits = asyncio.Event()

    def sync_receiver(sender: Any, **kwargs: Any) -> str:
        order.append("sync")
        return "sync"

    async def waits_for_the_other(sender: Any, **kwargs: Any) -> str:
        order.append("first")
        await first_waits.wait()  # set by the second: the two run side by side
        return "first"

    async def fails(sender: Any, **kwargs: Any) -> str:
        raise ValueError("no")

    async def releases(sender: Any, **kwargs: Any) -> str:
        order.append("second")
        first_waits.set()
        return "second"

    for receiver in (sync_receiver, waits_for_the_other, fails, releases):
        signal.connect(receiver, weak=False)

    responses = await asyncio.wait_for(signal.asend_robust(sender=None), 5)

    assert [r for r, _ in responses] == [sync_receiver, waits_for_the_other, fails, releases]
    assert responses[0][1] == "sync" and responses[1][1] == "first"
    assert isinstance(responses[2][1], ValueError) and responses[3][1] == "second"
    assert order == ["sync", "first", "second"]
    assert await InlineSignal().asend_robust(sender=None) == []


async def test_inline_signal_awaits_a_single_receiver_in_the_callers_task() -> None:
    signal = InlineSignal()
    tasks: list[Any] = []

    async def receiver(sender: Any, **kwargs: Any) -> None:
        tasks.append(asyncio.current_task())

    signal.connect(receiver, weak=False)
    await signal.asend_robust(sender=None)

    assert tasks == [asyncio.current_task()]
