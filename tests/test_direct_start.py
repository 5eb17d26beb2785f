"""Direct start (runs.engine.direct): a run admitted beside a free local worker starts in
admission's own transaction, and nothing else about runs changes: fairness, the worker's
concurrency, one running run per thread, and recovery after the process dies."""

import asyncio
import itertools
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from django.test import override_settings
from django.utils import timezone

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.loop_inbox import LoopInbox
from runs import admission, sql
from runs.create_serializers import parse_run_create
from runs.engine import bus, queue
from runs.engine.direct import DirectStart, serve_direct_starts
from runs.engine.worker import RunWorker
from runs.models import Run, WorkerHeartbeat
from tests.engine_support import fetch_run, fetch_thread, make_thread, pending_run, wait_for_status
from tests.fixtures import token_for
from tests.live import LiveServer, LiveServerFactory, poll_until
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]}}
#: A run that goes on (3 s) until the test has looked at it.
SLOW = {"assistant_id": "slow", "input": {"steps": 30, "delay": 0.1}, "stream_mode": ["custom"]}
RACERS = 50


@pytest.fixture
async def direct_worker(
    fresh_channel_layer: Any,
    closing_checkpointer: Any,
) -> AsyncIterator[Callable[..., Awaitable[RunWorker]]]:
    """Start a RunWorker on the test's loop that takes this process's direct starts, as the
    embedded worker does; it is stopped at the end of the test."""
    started: list[tuple[RunWorker, asyncio.Task[None]]] = []

    async def start(concurrency: int = 2) -> RunWorker:
        worker = RunWorker(concurrency=concurrency)
        task = asyncio.create_task(worker.run())
        started.append((worker, task))
        await worker.started.wait()
        serve_direct_starts(worker)
        return worker

    yield start
    serve_direct_starts(None)
    for worker, task in started:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


async def admit(user: Any, thread: Thread, body: dict[str, Any]) -> Run:
    return await call_sync(
        admission.admit_run,
        user=user,
        thread_id=thread.pk,
        request=parse_run_create(body),
        on=Executor.API,
    )


async def new_thread(user: Any) -> Thread:
    return await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)


def started_directly(run: Run) -> bool:
    """A direct start writes the row running in the insert: started when it was created."""
    return run.started_at is not None and run.started_at == run.created_at


# --- In this process ---------------------------------------------------------------------------


async def test_a_run_admitted_beside_a_free_worker_is_running_when_admission_returns(
    user: Any, direct_worker: Any
) -> None:
    worker = await direct_worker()
    thread = await new_thread(user)

    run = await admit(user, thread, ECHO)

    assert run.status == Run.Status.RUNNING
    assert run.worker_id == worker.worker_id
    stored = await fetch_run(run.pk)
    assert stored.status in (Run.Status.RUNNING, Run.Status.SUCCESS)
    assert stored.worker_id == worker.worker_id and stored.attempt == 1
    assert stored.lease_expires_at is not None or stored.status == Run.Status.SUCCESS
    assert started_directly(stored)
    done = await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0)
    assert done.ended_at is not None and done.lease_expires_at is None
    assert (await fetch_thread(thread.pk)).status == Thread.Status.IDLE


async def test_the_admitting_request_resumes_before_its_directly_started_run_begins(
    user: Any, direct_worker: Any
) -> None:
    # The hand-off waits for admission's reply: the request's step (a stream's `metadata`, a
    # wait's headers) comes before the run's first, which would otherwise delay them.
    worker = await direct_worker()
    thread = await new_thread(user)
    order: list[str] = []
    execute = worker._execute

    async def execute_noted(run: Run, cancel: Any) -> None:
        order.append("run begins")  # the execution task's first step
        await execute(run, cancel)

    worker._execute = execute_noted
    run = await admit(user, thread, ECHO)
    order.append("admission answered")

    assert run.status == Run.Status.RUNNING
    await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0)
    assert order == ["admission answered", "run begins"]


async def test_a_direct_start_does_not_overtake_a_pending_run(
    user: Any, direct_worker: Any
) -> None:
    # The worker claims only when woken: the pending run below waits, eligible, in the queue.
    with override_settings(RUN_POLL_SECONDS=3600.0):
        worker = await direct_worker(concurrency=2)
        busy = await admit(user, await new_thread(user), SLOW)
        waiting = await call_sync(
            pending_run,
            thread=await new_thread(user),
            user=user,
            input=ECHO["input"],
            on=Executor.THREAD_SENSITIVE,
        )

        late = await admit(user, await new_thread(user), ECHO)

        assert busy.status == Run.Status.RUNNING
        assert late.status == Run.Status.PENDING  # the queue serves `waiting` first
        first = await wait_for_status(waiting.pk, Run.Status.SUCCESS, within=30.0)
        second = await wait_for_status(late.pk, Run.Status.SUCCESS, within=30.0)
    assert first.started_at <= second.started_at
    assert first.worker_id == second.worker_id == worker.worker_id
    assert not started_directly(second)


async def test_a_run_admitted_beside_a_full_worker_waits_in_the_queue(
    user: Any, direct_worker: Any
) -> None:
    worker = await direct_worker(concurrency=1)
    busy = await admit(user, await new_thread(user), SLOW)

    late = await admit(user, await new_thread(user), ECHO)

    assert busy.status == Run.Status.RUNNING
    assert late.status == Run.Status.PENDING
    assert worker.active_run_ids == [busy.pk]
    assert not worker.reserve_slot()  # full: no slot for a direct start either
    done = await wait_for_status(late.pk, Run.Status.SUCCESS, within=30.0)
    ended = await fetch_run(busy.pk)
    assert ended.status == Run.Status.SUCCESS
    assert done.started_at >= ended.ended_at


async def test_runs_send_nothing_on_the_in_memory_channel_layer(
    user: Any, direct_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In one process nobody else can hear a layer message, and the in-memory layer sweeps every
    # channel's expired messages on each send: a run started directly, one queued behind a full
    # worker (its wake-up), and their events, ends and answers send none.
    if bus.reaches_other_processes():
        pytest.skip("a layer reaching other processes carries wake-ups and events")
    worker = await direct_worker(concurrency=1)
    layer = bus.layer()
    sent: list[tuple[str, Any]] = []
    for name in ("send", "group_send"):
        original = getattr(layer, name)

        async def recorded(target: str, message: Any, name: str = name, original: Any = original):
            sent.append((name, message))
            await original(target, message)

        monkeypatch.setattr(layer, name, recorded)
    # SLOW lasts 3 s: still running when the second run is admitted, even on a loaded machine.
    first = await admit(user, await new_thread(user), SLOW)
    queued = await admit(user, await new_thread(user), ECHO)
    assert (first.status, queued.status) == (Run.Status.RUNNING, Run.Status.PENDING)

    for run in (first, queued):
        assert (await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0)).worker_id == (
            worker.worker_id
        )
    assert sent == []


async def test_a_run_on_a_busy_thread_waits_in_the_queue(user: Any, direct_worker: Any) -> None:
    await direct_worker(concurrency=2)
    thread = await new_thread(user)
    busy = await admit(user, thread, SLOW)

    follower = await admit(user, thread, {**ECHO, "multitask_strategy": "enqueue"})

    assert busy.status == Run.Status.RUNNING
    assert follower.status == Run.Status.PENDING
    done = await wait_for_status(follower.pk, Run.Status.SUCCESS, within=30.0)
    assert done.started_at >= (await fetch_run(busy.pk)).ended_at


async def test_reserved_slots_count_against_the_workers_claims(
    user: Any, direct_worker: Any
) -> None:
    worker = await direct_worker(concurrency=2)

    assert worker.reserve_slot() and worker.reserve_slot()
    assert not worker.reserve_slot()
    assert worker._reserve_free_slots() == 0  # the claim loop's count: nothing to claim
    queued = await call_sync(
        pending_run,
        thread=await new_thread(user),
        user=user,
        input=ECHO["input"],
        on=Executor.THREAD_SENSITIVE,
    )
    worker.release_slot()  # wakes the worker, which claims the queued run in the freed slot
    assert (
        await wait_for_status(queued.pk, Run.Status.SUCCESS, within=30.0)
    ).worker_id == worker.worker_id
    worker.release_slot()


def test_the_one_running_run_index_sends_a_direct_insert_to_the_queue(user: Any) -> None:
    thread = make_thread(user=user)
    running = pending_run(thread=thread, user=user)
    Run.objects.filter(pk=running.pk).update(status=Run.Status.RUNNING, worker_id="elsewhere")
    now = timezone.now()
    run = Run(
        thread=thread,
        user=user,
        assistant_id=running.assistant_id,
        graph_id="echo",
        run_at=now,
        created_at=now,
        updated_at=now,
    )

    started = admission._insert_running(run, direct=DirectStart(RunWorker(concurrency=1)), now=now)

    assert not started
    assert (run.status, run.worker_id, run.started_at, run.attempt) == ("pending", "", None, 0)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert sql.insert_run(run)
    assert Run.objects.get(pk=run.pk).status == Run.Status.PENDING


def test_no_direct_start_without_a_local_worker_or_for_a_later_run(user: Any) -> None:
    serve_direct_starts(None)
    run = admission.admit_run(
        user=user, thread_id=make_thread(user=user).pk, request=parse_run_create(ECHO)
    )
    assert run.status == Run.Status.PENDING


# --- Real daphne processes, each with its embedded worker --------------------------------------


async def post_run(client: httpx.AsyncClient, thread_id: str, body: dict[str, Any]) -> Any:
    answer = await client.post(f"/threads/{thread_id}/runs", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def worker_ready(server: LiveServer, client: httpx.AsyncClient, user: Any) -> None:
    """Wait until the server's embedded worker has started (it starts with the first request
    and compiles every graph first), then let one run go through it."""
    prefix = f"{socket.gethostname()}:{server.process.pid}:"

    async def beating() -> bool:
        return await call_sync(
            WorkerHeartbeat.objects.filter(worker_id__startswith=prefix).exists,
            on=Executor.THREAD_SENSITIVE,
        )

    await poll_until(beating, "the embedded worker to start")
    answer = await client.post(f"/threads/{(await new_thread(user)).pk}/runs/wait", json=ECHO)
    assert answer.status_code == 200, answer.text


@pytest.mark.live
async def test_fifty_racing_creates_on_one_thread_run_one_at_a_time(
    live_server_factory: LiveServerFactory, user: Any
) -> None:
    server = live_server_factory.start(DEERFLOW_MAX_ACTIVE_RUNS_PER_USER="0")
    try:
        runs, created = await race_on_one_thread(server, user, thread := await new_thread(user))
    finally:
        server.stop()

    assert len(runs) == RACERS == len({run["run_id"] for run in created})
    assert {run.status for run in runs} == {Run.Status.SUCCESS}
    spans = sorted((run.started_at, run.ended_at) for run in runs)
    assert all(ended <= next_start for (_, ended), (next_start, _) in itertools.pairwise(spans))
    # The first create found the thread free: it was started by admission itself.
    assert any(started_directly(run) for run in runs)
    assert (await fetch_thread(thread.pk)).status == Thread.Status.IDLE


async def race_on_one_thread(
    server: LiveServer, user: Any, thread: Thread
) -> tuple[list[Run], list[Any]]:
    """RACERS simultaneous creates (enqueue) on the thread; its runs once all ended, and the
    created runs as the API answered them."""
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    body = {**ECHO, "multitask_strategy": "enqueue"}
    async with httpx.AsyncClient(
        base_url=server.api_url,
        headers={"Authorization": f"Bearer {key}"},
        trust_env=False,
        timeout=60.0,
        limits=httpx.Limits(max_connections=RACERS),
    ) as client:
        await worker_ready(server, client, user)
        created = await asyncio.gather(*(post_run(client, thread.pk, body) for _ in range(RACERS)))

        async def all_ended() -> list[Run]:
            runs = await call_sync(
                lambda: list(Run.objects.filter(thread=thread)), on=Executor.THREAD_SENSITIVE
            )
            return runs if all(not run.is_active for run in runs) else []

        runs = await poll_until(all_ended, "every run to end")
    return runs, created


@pytest.mark.live
async def test_a_direct_started_run_is_recovered_after_its_process_is_killed(
    live_server_factory: LiveServerFactory, user: Any
) -> None:
    short_lease = {"DEERFLOW_RUN_LEASE_SECONDS": "2", "DEERFLOW_RUN_POLL_SECONDS": "0.2"}
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    headers = {"Authorization": f"Bearer {key}"}
    thread = await new_thread(user)
    long_run = {**SLOW, "input": {"steps": 600, "delay": 0.1}}
    doomed = live_server_factory.start(**short_lease)
    try:
        async with httpx.AsyncClient(
            base_url=doomed.api_url, headers=headers, trust_env=False, timeout=60.0
        ) as client:
            await worker_ready(doomed, client, user)
            created = await post_run(client, thread.pk, long_run)
        assert created["status"] == "running"  # started by admission, in the doomed process
        run = await fetch_run(created["run_id"])
        assert started_directly(run)
        assert run.worker_id.startswith(f"{socket.gethostname()}:{doomed.process.pid}:")
    except BaseException:
        doomed.stop()
        raise

    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait()
    survivor = live_server_factory.start(**short_lease)
    try:
        ended = await poll_until(reaped_run(run), "the run to be reaped")
        async with httpx.AsyncClient(
            base_url=survivor.api_url, headers=headers, trust_env=False, timeout=60.0
        ) as client:
            answer = await client.post(f"/threads/{thread.pk}/runs/wait", json=ECHO)
    finally:
        survivor.stop()

    assert ended.status == Run.Status.ERROR
    assert ended.error == queue.WORKER_LOST
    assert answer.status_code == 200, answer.text
    assert "__error__" not in answer.json()
    assert (await fetch_thread(thread.pk)).status == Thread.Status.IDLE


def reaped_run(run: Run) -> Callable[[], Awaitable[Run | None]]:
    async def reaped() -> Run | None:
        stored = await fetch_run(run.pk)
        return stored if stored.status != Run.Status.RUNNING else None

    return reaped


async def test_a_run_queued_beside_a_free_local_worker_wakes_it_without_the_channel_layer(
    user: Any, direct_worker: Any
) -> None:
    # A batch is admitted in one transaction, so its runs go to the queue; with the in-memory
    # layer the local worker is woken directly. No poll would find them before the wait ends.
    with override_settings(RUN_POLL_SECONDS=3600.0):
        worker = await direct_worker(concurrency=2)
        queued = await call_sync(
            admission.admit_stateless_runs,
            user=user,
            requests=[parse_run_create(ECHO), parse_run_create(ECHO)],
            on=Executor.API,
        )
        assert all(run.status == Run.Status.PENDING for run in queued)
        for run in queued:
            done = await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0)
            assert done.worker_id == worker.worker_id


def test_a_wake_up_after_the_workers_loop_closed_does_nothing() -> None:
    # Admission wakes the local worker once it commits (transaction.on_commit): at shutdown
    # the loop may close between the check and the call, and the admitted run must not 500.
    worker = RunWorker(concurrency=1)
    worker._accepting = True
    loop = asyncio.new_event_loop()
    worker._inbox = LoopInbox(loop)
    loop.close()

    worker.wake_if_free()

    assert not worker._wake.is_set()
