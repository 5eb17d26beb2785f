"""When the worker looks at the queue: after a run's end only when a pending run may be there
(the last look found one, or one was queued since), yet every queued run still starts as soon
as a slot and its thread are free, without waiting for the poll."""

import contextvars
import itertools
from collections import Counter
from typing import Any

import pytest
from django.test import override_settings

from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus, queue
from runs.engine import worker as worker_module
from runs.engine.worker import RunWorker
from runs.models import Run
from tests.engine_support import pending_run, wait_for_status
from tests.test_direct_start import (  # noqa: F401
    ECHO,
    SLOW,
    admit,
    direct_worker,
    new_thread,
)
from tests.waiting import read_until

pytestmark = pytest.mark.django_db(transaction=True)

SHORT_SLOW = {**SLOW, "input": {"steps": 10, "delay": 0.1}}


@pytest.fixture
def queue_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the worker read the queue (idle polls and claims) from now on."""
    reads: Counter[str] = Counter()
    for name in ("idle", "claim_runs"):
        original = getattr(queue, name)

        def counted(*args: Any, name: str = name, original: Any = original, **kwargs: Any) -> Any:
            reads[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(queue, name, counted)
    return reads


async def found_the_queue_empty(worker: RunWorker) -> None:
    """Until the worker's claim loop has looked at the queue and found no pending run."""
    await read_until(lambda: worker._queue_empty, "the worker to find the queue empty")


@override_settings(RUN_POLL_SECONDS=3600.0)
async def test_runs_ending_beside_an_empty_queue_do_not_look_at_it(
    user: Any,
    direct_worker: Any,  # noqa: F811
    queue_reads: Counter[str],
) -> None:
    worker = await direct_worker(concurrency=2)
    await found_the_queue_empty(worker)
    queue_reads.clear()

    for _ in range(3):
        run = await admit(user, await new_thread(user), ECHO)
        assert run.status == Run.Status.RUNNING  # started directly
        await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0)

    assert queue_reads == Counter()


@override_settings(RUN_POLL_SECONDS=3600.0)
async def test_a_run_queued_behind_its_threads_run_starts_when_that_run_ends(
    user: Any,
    direct_worker: Any,  # noqa: F811
) -> None:
    worker = await direct_worker(concurrency=2)
    await found_the_queue_empty(worker)
    thread = await new_thread(user)
    busy = await admit(user, thread, SHORT_SLOW)

    follower = await admit(user, thread, {**ECHO, "multitask_strategy": "enqueue"})

    assert (busy.status, follower.status) == (Run.Status.RUNNING, Run.Status.PENDING)
    done = await wait_for_status(follower.pk, Run.Status.SUCCESS, within=30.0)
    assert done.started_at >= (await fetch_ended(busy.pk))


@override_settings(RUN_POLL_SECONDS=3600.0)
async def test_a_run_queued_beside_a_full_worker_starts_when_its_slot_frees(
    user: Any,
    direct_worker: Any,  # noqa: F811
) -> None:
    worker = await direct_worker(concurrency=1)
    await found_the_queue_empty(worker)
    busy = await admit(user, await new_thread(user), SHORT_SLOW)

    late = await admit(user, await new_thread(user), ECHO)

    assert (busy.status, late.status) == (Run.Status.RUNNING, Run.Status.PENDING)
    done = await wait_for_status(late.pk, Run.Status.SUCCESS, within=30.0)
    assert done.started_at >= (await fetch_ended(busy.pk))


@override_settings(RUN_POLL_SECONDS=3600.0)
async def test_a_wake_up_message_after_an_empty_look_makes_the_worker_look_again(
    user: Any,
    direct_worker: Any,  # noqa: F811
) -> None:
    # Another process queued a run: its wake-up message arrives on the layer.
    worker = await direct_worker(concurrency=2)
    await found_the_queue_empty(worker)
    thread = await new_thread(user)
    run = await call_sync(
        pending_run, thread=thread, user=user, input={}, on=Executor.THREAD_SENSITIVE
    )

    await bus.wake_workers()

    await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0)


@override_settings(RUN_POLL_SECONDS=3600.0)
async def test_the_idle_poll_and_the_claim_after_it_are_one_hop(
    user: Any,
    direct_worker: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slot frees beside a queued run: the poll that finds it eligible and the claim that
    takes it run in one hop to the engine's thread, not one hop each."""
    hop: contextvars.ContextVar[int] = contextvars.ContextVar("hop", default=0)
    hops = itertools.count(1)
    reads: list[tuple[str, int]] = []
    call_sync_of_worker = worker_module.call_sync

    async def numbered(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        token = hop.set(next(hops))  # the hop's thread runs in a copy of this context
        try:
            return await call_sync_of_worker(fn, *args, **kwargs)
        finally:
            hop.reset(token)

    monkeypatch.setattr(worker_module, "call_sync", numbered)
    for name in ("idle", "claim_runs"):
        original = getattr(queue, name)

        def read(*args: Any, name: str = name, original: Any = original, **kwargs: Any) -> Any:
            reads.append((name, hop.get()))
            return original(*args, **kwargs)

        monkeypatch.setattr(queue, name, read)
    worker = await direct_worker(concurrency=1)
    await found_the_queue_empty(worker)
    busy = await admit(user, await new_thread(user), SHORT_SLOW)
    late = await admit(user, await new_thread(user), ECHO)
    assert (busy.status, late.status) == (Run.Status.RUNNING, Run.Status.PENDING)
    reads.clear()

    await wait_for_status(late.pk, Run.Status.SUCCESS, within=30.0)

    claims = [at for at, (name, _) in enumerate(reads) if name == "claim_runs"]
    assert len(claims) == 1
    claim = reads[claims[0]]
    assert reads[claims[0] - 1] == ("idle", claim[1]), f"the poll and the claim: {reads}"


async def fetch_ended(run_id: Any) -> Any:
    ended = await wait_for_status(run_id, Run.Status.SUCCESS, within=30.0)
    return ended.ended_at
