"""The run worker in this process: claiming, wake-ups, cancels, reaping and stopping."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from deerflow_site.bridge import Executor, call_sync
from runs.cancellation import cancel_run
from runs.engine import bus, maintenance
from runs.engine.worker import RunWorker
from runs.models import Run, RunStreamEvent
from tests.engine_support import fetch_run, fetch_thread, make_thread, pending_run, wait_for_status
from tests.fixtures import client_for
from tests.waiting import in_database, read_until
from threads.models import Thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer"),
]

SLOW = {"graph_id": "slow", "input": {"steps": 50, "delay": 0.1}, "stream_mode": ["custom"]}


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., Awaitable[RunWorker]]]:
    """Start RunWorkers on the test's loop; each is stopped at the end of the test."""
    started: list[tuple[RunWorker, asyncio.Task[None]]] = []

    async def start(concurrency: int = 4, worker_id: str | None = None) -> RunWorker:
        worker = RunWorker(concurrency=concurrency, worker_id=worker_id)
        task = asyncio.create_task(worker.run())
        started.append((worker, task))
        await worker.started.wait()
        return worker

    yield start
    for worker, task in started:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


async def queue_run(user: Any, thread: Thread | None = None, **kwargs: Any) -> Run:
    thread = thread or await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    return await call_sync(
        pending_run, thread=thread, user=user, **kwargs, on=Executor.THREAD_SENSITIVE
    )


async def test_worker_executes_a_queued_run(user: Any, start_worker: Any) -> None:
    run = await queue_run(user, input={"messages": [{"role": "user", "content": "hi"}]})

    await start_worker()

    done = await wait_for_status(run.pk, Run.Status.SUCCESS)
    thread = await fetch_thread(done.thread_id)
    assert thread.status == Thread.Status.IDLE
    assert thread.values["messages"][-1]["content"] == "echo: hi"


@pytest.fixture
def no_database_polls(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten minutes between the worker's looks at the database: its poll for pending runs, and
    its maintenance tick (the least of the poll, a third of the lease and the purge's period),
    which reads the cancel flags. What starts or stops a run within a test's wait can then only
    be a message (fixed bounds of 1-2 s on a message's effect failed on a loaded CI machine)."""
    settings.RUN_POLL_SECONDS = 600.0
    settings.RUN_LEASE_SECONDS = 1800.0
    monkeypatch.setattr(maintenance, "PURGE_EVERY_SECONDS", 600.0)


@pytest.mark.usefixtures("no_database_polls")
async def test_wake_up_message_starts_a_run_without_waiting_for_the_poll(
    user: Any, start_worker: Any
) -> None:
    worker = await start_worker()
    # Its first look at the queue found nothing: it sleeps until woken or its next poll.
    await read_until(lambda: worker._queue_empty, "the worker to find the queue empty")
    run = await queue_run(user, input={})

    await bus.wake_workers()

    await wait_for_status(run.pk, Run.Status.SUCCESS, within=60.0)


@pytest.mark.usefixtures("no_database_polls")
async def test_cancel_message_interrupts_a_running_run(user: Any, start_worker: Any) -> None:
    run = await queue_run(user, **{**SLOW, "input": {"steps": 1000, "delay": 0.1}})
    await start_worker()
    await wait_for_status(run.pk, Run.Status.RUNNING, within=60.0)

    await call_sync(
        Run.objects.filter(pk=run.pk).update,
        cancel_action="interrupt",
        on=Executor.THREAD_SENSITIVE,
    )
    worker_id = (
        await call_sync(Run.objects.get, pk=run.pk, on=Executor.THREAD_SENSITIVE)
    ).worker_id
    await bus.publish_cancel(run_id=run.pk, worker_id=worker_id, action="interrupt")

    # The run would go on for 100 s, and the flag is read ten minutes from the worker's start.
    stopped = await wait_for_status(run.pk, Run.Status.INTERRUPTED, within=60.0)
    assert not stopped.rolled_back


@override_settings(RUN_POLL_SECONDS=0.2)
async def test_cancel_flag_in_the_database_stops_a_run_without_a_message(
    user: Any, start_worker: Any
) -> None:
    run = await queue_run(user, **SLOW)
    await start_worker()
    await wait_for_status(run.pk, Run.Status.RUNNING)

    await call_sync(
        Run.objects.filter(pk=run.pk).update, cancel_action="rollback", on=Executor.THREAD_SENSITIVE
    )

    stopped = await wait_for_status(run.pk, Run.Status.INTERRUPTED, within=20.0)
    assert stopped.rolled_back


async def test_a_freed_slot_goes_to_the_user_with_fewer_running_runs(
    user: Any, other_user: Any, start_worker: Any
) -> None:
    long_run = {**SLOW, "input": {"steps": 1000, "delay": 0.1}}
    backlog = [await queue_run(user, **long_run) for _ in range(3)]
    await start_worker(concurrency=2)
    for run in backlog[:2]:
        await wait_for_status(run.pk, Run.Status.RUNNING)
    late = await queue_run(other_user, **long_run)

    await call_sync(cancel_run, run=backlog[0], action="interrupt", on=Executor.THREAD_SENSITIVE)

    await wait_for_status(late.pk, Run.Status.RUNNING)
    assert (await fetch_run(backlog[2].pk)).status == Run.Status.PENDING
    for run in (backlog[2], backlog[1], late):
        await call_sync(cancel_run, run=run, action="interrupt", on=Executor.THREAD_SENSITIVE)
        await wait_for_status(run.pk, Run.Status.INTERRUPTED)


@override_settings(MAX_ACTIVE_RUNS_PER_USER=2)
async def test_below_the_concurrency_a_per_user_limit_lets_another_users_run_start_at_once(
    user: Any, other_user: Any, start_worker: Any
) -> None:
    await start_worker(concurrency=3)
    body = {"assistant_id": "slow", "input": {"steps": 1000, "delay": 0.1}, "stream_mode": "custom"}
    alice, bob = [
        await call_sync(client_for, who, on=Executor.THREAD_SENSITIVE) for who in (user, other_user)
    ]

    async def create(client: Any) -> Any:
        return await call_sync(
            client.post, "/api/runs", body, format="json", on=Executor.THREAD_SENSITIVE
        )

    backlog = [(await create(alice)).json() for _ in range(2)]
    refused = await create(alice)
    late = (await create(bob)).json()

    assert refused.status_code == 429
    for run in [*backlog, late]:
        await wait_for_status(run["run_id"], Run.Status.RUNNING)
    for run in [*backlog, late]:
        stored = await fetch_run(run["run_id"])
        await call_sync(cancel_run, run=stored, action="interrupt", on=Executor.THREAD_SENSITIVE)
        await wait_for_status(run["run_id"], Run.Status.INTERRUPTED)


async def test_enqueued_runs_of_a_thread_run_one_at_a_time_in_order(
    user: Any, start_worker: Any
) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    runs = [
        await queue_run(user, thread, graph_id="slow", input={"steps": 2, "delay": 0.05})
        for _ in range(3)
    ]

    await start_worker(concurrency=3)

    finished = [await wait_for_status(r.pk, Run.Status.SUCCESS) for r in runs]
    for earlier, later in itertools.pairwise(finished):
        assert earlier.ended_at <= later.started_at
    assert (await fetch_thread(thread.pk)).values["ticks"] == [1, 2, 1, 2, 1, 2]


async def test_worker_runs_runs_of_different_threads_concurrently(
    user: Any, start_worker: Any
) -> None:
    runs = [
        await queue_run(user, graph_id="slow", input={"steps": 1, "delay": 2.0}) for _ in range(3)
    ]

    await start_worker(concurrency=3)

    # All three ran at once: each started before any ended (a fixed 1.5 s bound on the whole
    # failed on a loaded CI machine).
    finished = [await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0) for run in runs]
    assert max(run.started_at for run in finished) < min(run.ended_at for run in finished)


async def test_worker_never_exceeds_its_concurrency(user: Any, start_worker: Any) -> None:
    runs = [await queue_run(user, **SLOW) for _ in range(3)]

    await start_worker(concurrency=2)

    # Two running (for the runs' 5 s), awaited rather than read after a fixed 1 s, which a
    # loaded CI machine may need to claim them.
    async def statuses_now() -> list[str]:
        return [(await fetch_run(r.pk)).status for r in runs]

    statuses = await read_until(
        statuses_now, "two runs running", accept=lambda now: now.count(Run.Status.RUNNING) >= 2
    )
    assert statuses.count(Run.Status.RUNNING) == 2
    assert statuses.count(Run.Status.PENDING) == 1


async def test_delayed_run_starts_once_due(user: Any, start_worker: Any) -> None:
    # Started at or after its time, whenever the worker looked (reading `pending` 0.2 s after
    # the worker started raced the 0.5 s delay on a loaded machine).
    run = await queue_run(user, input={}, run_at=timezone.now() + timedelta(seconds=0.5))
    await start_worker()

    done = await wait_for_status(run.pk, Run.Status.SUCCESS, within=20.0)
    assert done.started_at >= run.run_at


@override_settings(RUN_LEASE_SECONDS=0.6, RUN_POLL_SECONDS=0.1)
async def test_live_worker_reaps_a_run_whose_worker_died(user: Any, start_worker: Any) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    orphan = await queue_run(user, thread, input={})
    await call_sync(
        Run.objects.filter(pk=orphan.pk).update,
        status=Run.Status.RUNNING,
        worker_id="dead-host:1:dead",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        on=Executor.THREAD_SENSITIVE,
    )
    follower = await queue_run(user, thread, input={})

    await start_worker()

    reaped = await wait_for_status(orphan.pk, Run.Status.ERROR)
    assert reaped.error["error"] == "WorkerLost"
    await wait_for_status(follower.pk, Run.Status.SUCCESS)


@override_settings(RUN_LEASE_SECONDS=0.6, RUN_POLL_SECONDS=0.1)
async def test_worker_keeps_renewing_the_lease_of_a_long_run(user: Any, start_worker: Any) -> None:
    run = await queue_run(user, graph_id="slow", input={"steps": 10, "delay": 0.2})

    await start_worker()

    done = await wait_for_status(run.pk, Run.Status.SUCCESS, within=10.0)
    assert done.started_at + timedelta(seconds=1.5) < done.ended_at


@override_settings(WORKER_SHUTDOWN_SECONDS=0.3)
async def test_stopping_worker_ends_unfinished_runs_with_an_error(user: Any) -> None:
    run = await queue_run(user, **SLOW)
    worker = RunWorker(concurrency=2)
    task = asyncio.create_task(worker.run())
    await wait_for_status(run.pk, Run.Status.RUNNING)

    worker.request_stop()
    await asyncio.wait_for(task, 10)

    stopped = await fetch_run(run.pk)
    assert stopped.status == Run.Status.ERROR
    assert stopped.error["error"] == "WorkerShutdown"
    assert (await fetch_thread(stopped.thread_id)).status == Thread.Status.ERROR


@override_settings(WORKER_SHUTDOWN_SECONDS=5.0)
async def test_stopping_worker_lets_short_runs_finish(user: Any) -> None:
    run = await queue_run(user, graph_id="slow", input={"steps": 2, "delay": 0.2})
    worker = RunWorker(concurrency=2)
    task = asyncio.create_task(worker.run())
    await wait_for_status(run.pk, Run.Status.RUNNING)

    worker.request_stop()
    await asyncio.wait_for(task, 10)

    assert (await fetch_run(run.pk)).status == Run.Status.SUCCESS


@override_settings(ON_COMPLETION_DELETE_SECONDS=0.1)
async def test_run_with_on_completion_delete_removes_its_thread(
    user: Any, start_worker: Any
) -> None:
    run = await queue_run(user, input={}, on_completion="delete")

    await start_worker()

    await read_until(
        in_database(Thread.objects.filter(pk=run.thread_id).exists),
        "the run's thread to be deleted",
        accept=lambda kept: not kept,
    )


async def test_finished_run_posts_its_webhook(
    user: Any, start_worker: Any, webhook_receiver: Any
) -> None:
    human = {"messages": [{"role": "user", "content": "hi"}]}
    run = await queue_run(user, input=human, webhook=webhook_receiver.url())

    await start_worker()

    await wait_for_status(run.pk, Run.Status.SUCCESS)
    [payload] = await call_sync(webhook_receiver.wait_for, 1, on=Executor.BLOCKING)
    assert payload["run_id"] == str(run.pk)
    assert payload["status"] == "success"
    assert payload["values"]["messages"][-1]["content"] == "echo: hi"
    assert payload["error"] is None
    assert payload["run_started_at"] and payload["run_ended_at"]


@override_settings(STREAM_RETENTION_SECONDS=1.0)
async def test_workers_delete_stored_events_once_their_retention_has_passed(
    user: Any, start_worker: Any
) -> None:
    run = await queue_run(user, input={}, resumable=True)
    await start_worker()
    done = await wait_for_status(run.pk, Run.Status.SUCCESS)
    stored = RunStreamEvent.objects.filter(run_id=run.pk)
    # Kept while the retention runs: none of them can have passed it before the run's start
    # plus the retention (reading `exists` right after the run ended raced the purge when a
    # loaded machine noticed the end late).
    kept = await stored.aexists()
    assert kept or timezone.now() >= done.started_at + timedelta(seconds=1.0)
    await read_until(
        stored.aexists, "the run's stored events to be deleted", accept=lambda kept: not kept
    )
