"""Soak: 300 runs through `scripts/cluster` (2 web, 2 workers) on PostgreSQL + Redis, with a
worker SIGKILLed midway.

Every run is sent through one web process, mixing streams, waits, background runs joined through
the other web process, cancels (interrupt and rollback) through the other web process and
`enqueue` on busy threads. Afterwards: every run ended in its expected status (or, if the killed
worker held it, `error` as a lost worker's run); no run executed twice; every stream that stayed
connected got every event, ids unique and increasing; no thread is left `busy`.
"""

import asyncio
import itertools
import json
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk.errors import ConflictError

from deerflow_site.bridge import Executor, call_sync
from runs.engine.queue import WORKER_LOST
from runs.models import Run
from tests.cluster import ON_PRODUCTION_STACK, Cluster, start_cluster
from tests.fixtures import sdk_client, token_for
from tests.live import poll_until, wait_until
from threads.models import Thread

pytestmark = [
    pytest.mark.skipif(not ON_PRODUCTION_STACK, reason="the cluster needs PostgreSQL and Redis"),
    pytest.mark.multiprocess,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]

#: The whole soak's bound (seconds): it is a test, not a benchmark.
SOAK_SECONDS = 300.0
#: Client operations in flight at once.
IN_FLIGHT = 16
#: Operations done before one worker is SIGKILLed.
KILL_AFTER = 100
SHORT = {"steps": 5, "delay": 0.02}
BUSY = {"steps": 20, "delay": 0.05}
LONG = {"steps": 400, "delay": 0.05}
#: Runs per kind of operation; enqueue makes two runs per operation.
PLAN = {"stream": 60, "wait": 60, "background_join": 80, "cancel": 40, "enqueue": 30}
SUCCESS, INTERRUPTED = Run.Status.SUCCESS, Run.Status.INTERRUPTED


@dataclass
class Soak:
    """What the clients saw: expected statuses, streams' frames, and the killed worker."""

    web: list[str]
    api_key: str
    #: One official SDK client per web process, closed at the end of the test.
    clients: list[Any]
    expected: dict[str, str] = field(default_factory=dict)  # thread id -> status of its runs
    streams: dict[str, list[tuple[int, str, Any]]] = field(default_factory=dict)
    stream_steps: dict[str, int] = field(default_factory=dict)
    killed_pid: int | None = None
    done: int = 0
    #: Threads whose cancel was refused (409) because the run had already ended: only a killed
    #: worker's run may end on its own before its cancel (the reaper ends it as `error`).
    refused_cancels: set[str] = field(default_factory=set)

    def sdk(self, index: int) -> Any:
        return self.clients[index % 2]


@pytest.fixture
def cluster(process_env: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    started = start_cluster(
        env=process_env,
        log_dir=tmp_path,
        web=2,
        workers=2,
        DEERFLOW_RUN_LEASE_SECONDS="5",
        DEERFLOW_RUN_POLL_SECONDS="0.2",
        DEERFLOW_WORKER_CONCURRENCY="10",
    )
    yield started
    started.stop()


async def read_sse(response: httpx.Response) -> list[tuple[int, str, Any]]:
    """(id, event, data) of every frame carrying an id, in order."""
    frames: list[tuple[int, str, Any]] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "id" in fields:
                frames.append((int(fields["id"]), fields.get("event", ""), fields.get("data")))
            fields = {}
        elif not line.startswith(":") and ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return frames


async def stream(soak: Soak, index: int, http: httpx.AsyncClient) -> None:
    thread = await soak.sdk(index).threads.create()
    thread_id = thread["thread_id"]
    soak.expected[thread_id] = SUCCESS
    soak.stream_steps[thread_id] = SHORT["steps"]
    body = {"assistant_id": "slow", "input": SHORT, "stream_mode": ["custom"]}
    url = f"{soak.web[index % 2]}/api/threads/{thread_id}/runs/stream"
    headers = {"Authorization": f"Bearer {soak.api_key}"}
    async with http.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        soak.streams[thread_id] = await read_sse(response)


async def wait(soak: Soak, index: int, http: httpx.AsyncClient) -> None:
    sdk = soak.sdk(index)
    thread = await sdk.threads.create()
    soak.expected[thread["thread_id"]] = SUCCESS
    # A run the killed worker held ends as `error`; the final checks tell that from a real failure.
    await sdk.runs.wait(
        thread["thread_id"],
        "echo",
        input={"messages": [{"role": "user", "content": "hi"}]},
        raise_error=False,
    )


async def background_join(soak: Soak, index: int, http: httpx.AsyncClient) -> None:
    thread = await soak.sdk(index).threads.create()
    soak.expected[thread["thread_id"]] = SUCCESS
    run = await soak.sdk(index).runs.create(thread["thread_id"], "slow", input=SHORT)
    await soak.sdk(index + 1).runs.join(thread["thread_id"], run["run_id"])


async def cancel(soak: Soak, index: int, http: httpx.AsyncClient) -> None:
    action = "interrupt" if index % 2 else "rollback"
    thread = await soak.sdk(index).threads.create()
    soak.expected[thread["thread_id"]] = INTERRUPTED
    run = await soak.sdk(index).runs.create(thread["thread_id"], "slow", input=LONG)
    other = soak.sdk(index + 1)

    async def started() -> bool:
        return (await other.runs.get(thread["thread_id"], run["run_id"]))["status"] != "pending"

    await poll_until(started, f"run {run['run_id']} to start")
    try:
        await other.runs.cancel(thread["thread_id"], run["run_id"], wait=True, action=action)
    except ConflictError:
        # 409: the run ended on its own before the cancel. Only the killed worker's run may (the
        # reaper ended it, racing this cancel); the final checks hold it to that.
        soak.refused_cancels.add(thread["thread_id"])


async def enqueue(soak: Soak, index: int, http: httpx.AsyncClient) -> None:
    sdk = soak.sdk(index)
    thread = await sdk.threads.create()
    soak.expected[thread["thread_id"]] = SUCCESS
    await sdk.runs.create(thread["thread_id"], "slow", input=BUSY)
    queued = await soak.sdk(index + 1).runs.create(
        thread["thread_id"], "slow", input=SHORT, multitask_strategy="enqueue"
    )
    await sdk.runs.join(thread["thread_id"], queued["run_id"])


OPERATIONS: dict[str, Callable[[Soak, int, httpx.AsyncClient], Awaitable[None]]] = {
    "stream": stream,
    "wait": wait,
    "background_join": background_join,
    "cancel": cancel,
    "enqueue": enqueue,
}


async def drive(soak: Soak, cluster: Cluster) -> None:
    """Every operation of PLAN, interleaved, IN_FLIGHT at a time; one worker killed midway."""
    by_kind = [[name] * count for name, count in PLAN.items()]
    plan = [name for names in itertools.zip_longest(*by_kind) for name in names if name]
    order = itertools.count()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(name: str, http: httpx.AsyncClient) -> None:
        async with gate:
            await OPERATIONS[name](soak, next(order), http)
            soak.done += 1
            if soak.done == KILL_AFTER:
                soak.killed_pid = cluster.worker_pids[0]
                os.kill(soak.killed_pid, signal.SIGKILL)

    async with httpx.AsyncClient(trust_env=False, timeout=120) as http:
        await asyncio.gather(*(one(name, http) for name in plan))


def settled_runs() -> list[Run]:
    """Every run, once none is pending or running (a killed worker's wait for reaping)."""
    wait_until(
        lambda: not Run.objects.active().exists(),
        "every run to end",
        log=lambda: str(list(Run.objects.active().values("run_id", "status"))),
    )
    return list(Run.objects.all())


def lost_with_the_killed_worker(run: Run, killed_pid: int | None) -> bool:
    return (
        killed_pid is not None
        and run.status == Run.Status.ERROR
        and run.error == WORKER_LOST
        and f":{killed_pid}:" in run.worker_id
    )


async def test_soak_300_runs_through_two_web_processes_and_two_workers_one_killed(
    cluster: Cluster, user: Any, closing: Any
) -> None:
    api_key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    clients = [sdk_client(closing, url + "/api", api_key) for url in cluster.web_urls]
    soak = Soak(web=cluster.web_urls, api_key=api_key, clients=clients)

    async with asyncio.timeout(SOAK_SECONDS):
        await drive(soak, cluster)
    runs = await call_sync(settled_runs, on=Executor.THREAD_SENSITIVE)

    assert soak.killed_pid is not None
    assert "worker 1 exited with code -9: restarting it" in cluster.output()
    assert len(runs) == sum(PLAN.values()) + PLAN["enqueue"]
    lost = {run.thread_id for run in runs if lost_with_the_killed_worker(run, soak.killed_pid)}
    assert soak.refused_cancels <= lost, soak.refused_cancels - lost
    for run in runs:
        if run.thread_id not in lost:
            assert run.status == soak.expected[run.thread_id], (run.pk, run.status, run.error)
        assert run.attempt == 1, (run.pk, run.attempt)  # claimed once: never executed twice
        if run.status == INTERRUPTED:
            assert run.rolled_back == (run.cancel_action == "rollback")
    for thread_id, frames in soak.streams.items():
        ids = [frame_id for frame_id, _, _ in frames]
        assert ids == sorted(set(ids)), (thread_id, ids)
        if thread_id not in lost:
            ticks = [json.loads(data)["tick"] for _, event, data in frames if event == "custom"]
            assert ticks == list(range(1, soak.stream_steps[thread_id] + 1)), (thread_id, frames)
            assert frames[-1][1] == "end"
    busy = Thread.objects.filter(status=Thread.Status.BUSY).values_list("pk", flat=True)
    assert await call_sync(list, busy, on=Executor.THREAD_SENSITIVE) == []
