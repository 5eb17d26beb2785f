"""Two daphne web processes and separate `manage.py runs_worker` processes on PostgreSQL + Redis.

The web processes run no worker (DEERFLOW_EMBEDDED_WORKER=false): every run is executed by a
worker process, and every stream, cancel and wake-up crosses processes through Redis. Only the
production stack can do that; on SQLite and the in-memory channel layer these tests skip.
"""

import asyncio
import itertools
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from langgraph_sdk.errors import ConflictError

from deerflow_site.bridge import Executor, call_sync
from runs.engine import queue
from runs.models import Run
from tests.engine_support import make_thread
from tests.fixtures import sdk_client, token_for
from tests.live import CommandProcess, LiveServer, LiveServerFactory, poll_until, watched
from threads.models import Thread

ON_PRODUCTION_STACK = bool(settings.REDIS_URL) and settings.DATABASES["default"]["ENGINE"].endswith(
    "postgresql"
)

pytestmark = [
    pytest.mark.skipif(
        not ON_PRODUCTION_STACK,
        reason="needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL): the in-memory channel "
        "layer cannot cross processes; scripts/test runs these in its PostgreSQL phase",
    ),
    pytest.mark.multiprocess,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]

#: A run that goes on long enough for anything to happen to it meanwhile (20 s).
LONG_RUN = {"steps": 200, "delay": 0.1}
#: Short leases, so that a dead worker's run is recovered in seconds.
SHORT_LEASE = {"DEERFLOW_RUN_LEASE_SECONDS": "2"}
RACE_ROUNDS = 50


# --- Processes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web(live_server_factory: LiveServerFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Web processes A and B: no embedded worker, so that runs execute in worker processes."""
    servers = (
        live_server_factory.start(DEERFLOW_EMBEDDED_WORKER="false"),
        live_server_factory.start(DEERFLOW_EMBEDDED_WORKER="false"),
    )
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def sdk_a(web: tuple[LiveServer, LiveServer], user: Any, closing: Any) -> Any:
    return sdk_client(closing, web[0].api_url, token_for(user))


@pytest.fixture
def sdk_b(web: tuple[LiveServer, LiveServer], user: Any, closing: Any) -> Any:
    return sdk_client(closing, web[1].api_url, token_for(user))


# --- Helpers ----------------------------------------------------------------------------------


async def stored(run_id: Any) -> Run:
    return await call_sync(Run.objects.get, pk=run_id, on=Executor.THREAD_SENSITIVE)


async def stored_thread(thread_id: str) -> Thread:
    return await call_sync(Thread.objects.get, pk=thread_id, on=Executor.THREAD_SENSITIVE)


async def wait_for_run(
    run_id: Any, accept: Callable[[Run], bool], what: str, worker: CommandProcess | None = None
) -> Run:
    """Poll the run's row until `accept` holds, while the test's processes get on (they start
    slowly on a loaded machine: see StartWatch)."""

    async def accepted() -> Run | None:
        run = await stored(run_id)
        return run if accept(run) else None

    return await poll_until(accepted, what, log=worker.log if worker else None)


async def first_part(stream: AsyncIterator[Any], event: str) -> Any:
    """Read a stream until its first part named `event` (the stream stays open)."""

    async def first() -> Any:
        async for part in stream:
            if part.event == event:
                return part
        raise AssertionError(f"the stream ended before any {event!r} event")

    return await watched(first(), f"a {event!r} event")


async def rest_of(stream: AsyncIterator[Any]) -> list[Any]:
    async def rest() -> list[Any]:
        return [part async for part in stream]

    return await watched(rest(), "the stream's end")


async def new_thread(sdk: Any) -> str:
    return (await sdk.threads.create())["thread_id"]


# --- Streaming --------------------------------------------------------------------------------


async def test_run_created_through_one_web_process_streams_to_a_client_of_the_other(
    sdk_a: Any, sdk_b: Any, start_worker_process: Any
) -> None:
    worker = start_worker_process()
    thread_id = await new_thread(sdk_a)
    run = await sdk_a.runs.create(
        thread_id, "slow", input={"steps": 30, "delay": 0.1}, stream_mode="custom"
    )

    parts = await rest_of(sdk_b.runs.join_stream(thread_id, run["run_id"]))

    events = [part.event for part in parts]
    assert events[0] == "metadata"
    assert events[-1] == "end"
    ticks = [part.data["tick"] for part in parts if part.event == "custom"]
    assert ticks, events
    assert ticks == list(range(ticks[0], 31))  # every tick from joining on, in order
    finished = await stored(run["run_id"])
    assert finished.status == Run.Status.SUCCESS
    assert worker.owns(finished), finished.worker_id


@pytest.fixture
def executing_web(live_server_factory: LiveServerFactory) -> Iterator[LiveServer]:
    """A web process with its embedded worker: runs created there execute there, and its own
    streams get their events by local fan-out. Stopped after the test, so that other tests'
    runs go to the workers they start."""
    server = live_server_factory.start(DEERFLOW_EMBEDDED_WORKER="true")
    yield server
    server.stop()


@pytest.fixture
def sdk_local(executing_web: LiveServer, user: Any, closing: Any) -> Any:
    return sdk_client(closing, executing_web.api_url, token_for(user))


async def test_a_run_streams_once_to_its_own_process_and_by_the_layer_to_another(
    executing_web: LiveServer, sdk_local: Any, sdk_b: Any
) -> None:
    thread_id = await new_thread(sdk_local)
    local = sdk_local.runs.stream(
        thread_id, "slow", input={"steps": 30, "delay": 0.1}, stream_mode="custom"
    )
    local_parts = [await anext(local)]
    local_parts.append(await first_part(local, "custom"))
    run_id = local_parts[0].data["run_id"]
    # B joins a run executing in the other process: its events come through Redis.
    remote = sdk_b.runs.join_stream(thread_id, run_id, stream_mode="custom")

    rest, remote_parts = await asyncio.gather(rest_of(local), rest_of(remote))

    local_parts += rest
    assert [part.event for part in local_parts] == ["metadata"] + ["custom"] * 30 + ["end"]
    assert [part.data["tick"] for part in local_parts[1:-1]] == list(range(1, 31))
    ids = [int(part.id) for part in local_parts]
    assert ids[:-1] == list(range(31))  # each event once, none lost (`end` has its own id)
    assert ids[-1] > ids[-2]
    ticks = [part.data["tick"] for part in remote_parts if part.event == "custom"]
    assert ticks and ticks == list(range(ticks[0], 31)), [p.event for p in remote_parts]
    assert remote_parts[-1].event == "end"
    finished = await stored(run_id)
    assert finished.status == Run.Status.SUCCESS
    assert finished.worker_id.startswith(f"{socket.gethostname()}:{executing_web.process.pid}:")


async def ticked(sdk: Any, thread_id: str, count: int) -> None:
    """Poll the thread's state until its `slow` run has ticked `count` times."""

    async def enough() -> bool:
        return ((await sdk.threads.get_state(thread_id))["values"].get("count") or 0) >= count

    await poll_until(enough, f"the run to tick {count} times")


async def ticks_of(stream: AsyncIterator[Any]) -> list[int]:
    """The ticks of a stream's `custom` events until its first `end` (a thread stream never
    closes by itself)."""
    ticks: list[int] = []

    async def until_end() -> list[int]:
        async for part in stream:
            if part.event == "end":
                return ticks
            if part.event == "custom":
                ticks.append(part.data["tick"])
        raise AssertionError(f"the stream ended without an end: {ticks}")

    return await watched(until_end(), "the stream's end")


async def test_streams_joined_from_other_processes_mid_run_hear_every_later_event(
    sdk_a: Any, sdk_b: Any, start_worker_process: Any
) -> None:
    """A run nobody listened to at its first batch: its publisher stops looking for listeners
    on Redis, until a stream joined from another process (its run's, its thread's) announces
    itself to the worker and waits for its answer."""
    start_worker_process()
    thread_id = await new_thread(sdk_a)
    run = await sdk_a.runs.create(
        thread_id, "slow", input={"steps": 30, "delay": 0.1}, stream_mode="custom"
    )
    await ticked(sdk_a, thread_id, 3)  # batches published with no one listening

    run_ticks, thread_ticks = await asyncio.gather(
        ticks_of(sdk_b.runs.join_stream(thread_id, run["run_id"], stream_mode="custom")),
        ticks_of(await sdk_a.threads.join_stream(thread_id)),
    )

    for ticks in (run_ticks, thread_ticks):
        assert ticks and ticks == list(range(ticks[0], 31)), ticks
        assert ticks[0] > 3  # joined mid-run
    assert (await stored(run["run_id"])).status == Run.Status.SUCCESS


# --- Cancellation -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["interrupt", "rollback"])
async def test_cancel_through_the_other_web_process_stops_the_run(
    sdk_a: Any, sdk_b: Any, start_worker_process: Any, action: str
) -> None:
    worker = start_worker_process()
    thread_id = await new_thread(sdk_a)
    run = await sdk_a.runs.create(thread_id, "slow", input=LONG_RUN, stream_mode="custom")
    # A tick on B's stream: the worker is executing the graph (and listening for cancels).
    joined = sdk_b.runs.join_stream(thread_id, run["run_id"])
    await first_part(joined, "custom")

    await sdk_b.runs.cancel(thread_id, run["run_id"], action=action)
    stopped = await wait_for_run(
        run["run_id"], lambda r: r.status == "interrupted", "the run to stop", worker
    )

    # Stopped short of its 200 ticks (no fixed time bound, which a loaded CI machine can miss:
    # the cancel's latency belongs in bench/).
    assert stopped.rolled_back == (action == "rollback")
    assert worker.owns(stopped)
    rest = await rest_of(joined)
    assert rest[-1].event == "end"
    ticks = [part.data["tick"] for part in rest if part.event == "custom"]
    assert not ticks or ticks[-1] < LONG_RUN["steps"]


# --- Admission races --------------------------------------------------------------------------


async def test_simultaneous_reject_creates_through_both_web_processes_admit_exactly_one(
    sdk_a: Any, sdk_b: Any, user: Any, start_worker_process: Any
) -> None:
    start_worker_process()
    threads = [
        await call_sync(make_thread, user=user, thread_id=f"race-{n}", on=Executor.THREAD_SENSITIVE)
        for n in range(RACE_ROUNDS)
    ]
    for thread in threads:
        # Long enough that the admitted run cannot end (and free the thread) during the round.
        answers = await asyncio.gather(
            *(
                sdk.runs.create(
                    thread.thread_id,
                    "slow",
                    input={"steps": 1, "delay": 10},
                    multitask_strategy="reject",
                )
                for sdk in (sdk_a, sdk_b)
            ),
            return_exceptions=True,
        )

        admitted = [answer for answer in answers if isinstance(answer, dict)]
        refused = [answer for answer in answers if isinstance(answer, ConflictError)]
        assert (len(admitted), len(refused)) == (1, 1), answers
        assert (
            await call_sync(Run.objects.filter(thread=thread).count, on=Executor.THREAD_SENSITIVE)
            == 1
        )
        await sdk_a.runs.cancel(thread.thread_id, admitted[0]["run_id"])


# --- Crash recovery ---------------------------------------------------------------------------


async def test_killed_worker_run_is_ended_by_a_live_worker_and_its_thread_takes_new_runs(
    sdk_a: Any, sdk_b: Any, start_worker_process: Any
) -> None:
    doomed = start_worker_process(**SHORT_LEASE)
    thread_id = await new_thread(sdk_a)
    run = await sdk_a.runs.create(thread_id, "slow", input=LONG_RUN, stream_mode="custom")
    joined = sdk_b.runs.join_stream(thread_id, run["run_id"])
    await first_part(joined, "custom")

    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait()
    survivor = start_worker_process(**SHORT_LEASE)

    ended = await wait_for_run(
        run["run_id"], lambda r: r.status != "running", "the run to be reaped", survivor
    )
    assert ended.status == Run.Status.ERROR
    assert ended.error == queue.WORKER_LOST
    assert doomed.owns(ended)
    parts = await rest_of(joined)
    assert [part.event for part in parts][-2:] == ["error", "end"]
    assert parts[-2].data == queue.WORKER_LOST
    assert (await stored_thread(thread_id)).status != Thread.Status.BUSY

    values = await sdk_b.runs.wait(thread_id, "slow", input={"steps": 2, "delay": 0})

    assert values["count"] == 2
    follower = (await sdk_b.runs.list(thread_id, limit=1))[0]
    assert follower["status"] == "success"
    assert survivor.owns(await stored(follower["run_id"]))


# --- Queues -----------------------------------------------------------------------------------


async def test_runs_enqueued_through_both_web_processes_execute_one_at_a_time_in_order(
    sdk_a: Any, sdk_b: Any, start_worker_process: Any
) -> None:
    start_worker_process()
    start_worker_process()  # two workers: "one at a time" must hold across them too
    thread_id = await new_thread(sdk_a)
    run_ids = []
    for steps in (1, 2, 3, 4):  # run n ticks 1..n, so the ticks show the order of execution
        sdk = sdk_a if steps % 2 else sdk_b
        run = await sdk.runs.create(
            thread_id,
            "slow",
            input={"steps": steps, "delay": 0.2},
            multitask_strategy="enqueue",
        )
        run_ids.append(run["run_id"])

    await watched(sdk_b.runs.join(thread_id, run_ids[-1]), "the last run")

    state = await sdk_a.threads.get_state(thread_id)
    assert state["values"]["ticks"] == [1, 1, 2, 1, 2, 3, 1, 2, 3, 4]
    runs = [await stored(run_id) for run_id in run_ids]
    assert [run.status for run in runs] == ["success"] * 4
    for earlier, later in itertools.pairwise(runs):
        assert later.started_at >= earlier.ended_at, (earlier, later)


# --- Waiting ----------------------------------------------------------------------------------


async def test_wait_join_and_a_cancels_wait_answer_as_the_database_says_for_a_worker_run(
    sdk_a: Any, sdk_b: Any, start_worker_process: Any
) -> None:
    """The answer travels with the run's `end` from the worker to the waiting web process
    (`bus.run_end_group`), or is read from the database when too large for the layer: either
    way it is what the run and its thread hold."""
    from runs import selectors
    from runs.engine import answers

    start_worker_process()
    huge = "x" * (answers.LAYER_ANSWER_MAX_BYTES + 1)
    cases = {
        "echo": {"messages": [{"role": "user", "content": "hello"}]},
        "failing": {"message": "boom"},
        "ask_human": {"question": "color?"},
        "echo-huge": {"messages": [{"role": "user", "content": huge}]},
    }
    for case, graph_input in cases.items():
        thread_id = await new_thread(sdk_a)
        graph = case.removesuffix("-huge")
        answer = await watched(
            sdk_a.runs.wait(thread_id, graph, input=graph_input, raise_error=False), case
        )
        [run] = await sdk_a.runs.list(thread_id)
        joined = await watched(sdk_b.runs.join(thread_id, run["run_id"]), case)
        stored_answer = await call_sync(
            selectors.final_answer, run_id=run["run_id"], on=Executor.THREAD_SENSITIVE
        )
        assert answer == joined == stored_answer, case
        assert {"echo": "messages", "failing": "__error__", "ask_human": "__interrupt__"}.get(
            graph, "messages"
        ) in answer

    # A run joined while it goes on, and a cancel that waits for it to stop, both through the
    # other web process.
    thread_id = await new_thread(sdk_a)
    run = await sdk_a.runs.create(thread_id, "slow", input=LONG_RUN)
    joining = asyncio.ensure_future(sdk_b.runs.join(thread_id, run["run_id"]))
    await wait_for_run(run["run_id"], lambda r: r.status == Run.Status.RUNNING, "running")
    await watched(sdk_a.runs.cancel(thread_id, run["run_id"], wait=True), "the cancel")
    assert (await stored(run["run_id"])).status == Run.Status.INTERRUPTED
    assert await watched(joining, "the join") == await call_sync(
        selectors.final_answer, run_id=run["run_id"], on=Executor.THREAD_SENSITIVE
    )
