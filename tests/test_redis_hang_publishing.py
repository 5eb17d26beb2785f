"""A worker's runs on a hung Redis (SIGSTOPped: it takes connections and answers nothing).
Their event publishing never waits longer than `bus.SEND_SECONDS` a batch: the run still ends,
its final status committed, and a stream of the same process still gets its events and its end
(delivered here directly; other processes' streams read the end from the database, as for any
lost message). Their leases are still renewed.

The server (embedded worker, PostgreSQL) gets a Redis of its own (test_cancel_without_layer's
fixture), so that stopping it leaves the suite's own alone.
"""

import asyncio
import os
import signal
from datetime import timedelta
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from tests.cluster import ON_PRODUCTION_STACK
from tests.engine_support import wait_for_status
from tests.live import LiveServerFactory
from tests.test_cancel_without_layer import (  # noqa: F401 (own_redis: a fixture)
    HUNG_LAYER_ANSWER,
    LONG_RUN,
    api_of,
    own_redis,
    status_of,
)

pytestmark = [
    pytest.mark.skipif(not ON_PRODUCTION_STACK, reason="stops a Redis: the PostgreSQL phase"),
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]

#: Ticks after Redis hangs: enough batches that a publish waiting on the Redis socket's timeout
#: (30 s, deerflow_site.settings) each time holds the run's end far beyond HUNG_LAYER_ANSWER.
TICKS = {"steps": 30, "delay": 0.1}


async def test_a_run_ends_and_its_stream_hears_it_with_redis_hung_mid_run(
    live_server_factory: LiveServerFactory,
    own_redis: Any,  # noqa: F811 (the fixture)
    user: Any,
) -> None:
    redis, redis_url = own_redis
    server = live_server_factory.start(REDIS_URL=redis_url)
    async with api_of(server, user, answer_within=HUNG_LAYER_ANSWER) as api:
        thread_id = (await api.post("/threads", json={})).json()["thread_id"]
        body = {"assistant_id": "slow", "input": TICKS}
        run_id = (await api.post(f"/threads/{thread_id}/runs", json=body)).json()["run_id"]
        await wait_for_status(run_id, Run.Status.RUNNING)
        events: list[str] = []
        stopped = False
        try:
            # The whole stream within the bound: a publish that waited on the hung socket would
            # hold the run's end (its last batch is drained before its status is committed).
            async with asyncio.timeout(HUNG_LAYER_ANSWER):
                url = f"/threads/{thread_id}/runs/{run_id}/stream"
                async with api.stream("GET", url) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if not line.startswith("event: "):
                            continue
                        events.append(line.removeprefix("event: "))
                        if not stopped and events[-1] != "metadata":  # mid-run: Redis hangs
                            os.kill(redis.process.pid, signal.SIGSTOP)
                            stopped = True
            assert await status_of(run_id) == Run.Status.SUCCESS
        finally:
            if stopped:
                os.kill(redis.process.pid, signal.SIGCONT)
        assert stopped and events[-1] == "end", events
        assert len(events) > 3, events  # ticks came after the hang, not only the end
    server.stop()


#: Runs of a thread one after the other with Redis hung: a publisher that waited for the layer's
#: bound (`bus.SEND_SECONDS`, 2 s) at each of its batches would take two bounds a run at least
#: (its first batch's look-up, its end), 10 * 2 * 2 s = 40 s, far beyond HUNG_LAYER_ANSWER.
RUNS_ONE_AFTER_ANOTHER = 10


async def test_a_threads_stream_hears_run_after_run_at_once_with_redis_hung(
    live_server_factory: LiveServerFactory,
    own_redis: Any,  # noqa: F811 (the fixture)
    user: Any,
) -> None:
    """Once the layer has left a batch unanswered, a run's batches skip it (one probe at a time
    goes in the background): a stream of the same process hears every event of run after run,
    each started once the stream heard the previous one's end, all while Redis still hangs."""
    redis, redis_url = own_redis
    server = live_server_factory.start(REDIS_URL=redis_url, DEERFLOW_RUN_POLL_SECONDS="0.1")
    async with api_of(server, user, answer_within=HUNG_LAYER_ANSWER) as api:
        thread_id = (await api.post("/threads", json={})).json()["thread_id"]
        body = {
            "assistant_id": "slow",
            "input": {"steps": 3, "delay": 0},
            "stream_mode": ["custom"],
            "multitask_strategy": "enqueue",
        }
        async with api.stream("GET", f"/threads/{thread_id}/stream") as response:
            assert response.status_code == 200
            lines = response.aiter_lines()

            async def one_run() -> list[str]:
                """A run of the thread, and the stream's `custom` data and end of it."""
                run = await api.post(f"/threads/{thread_id}/runs", json=body)
                assert run.status_code == 200, run.text
                heard: list[str] = []
                async for line in lines:
                    if line.startswith("data: ") and '"tick"' in line:
                        heard.append(line.removeprefix("data: "))
                    elif line == "event: end":
                        return heard
                raise AssertionError(f"the stream closed before the run's end: {heard}")

            await one_run()  # the stream listens (with Redis answering)
            os.kill(redis.process.pid, signal.SIGSTOP)
            heard_while_hung = []
            try:
                async with asyncio.timeout(HUNG_LAYER_ANSWER):
                    for _ in range(RUNS_ONE_AFTER_ANOTHER):
                        heard_while_hung.append(await one_run())
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
        ticks = ['{"tick":1}', '{"tick":2}', '{"tick":3}']
        assert heard_while_hung == [ticks] * RUNS_ONE_AFTER_ANOTHER
    server.stop()


async def lease_of(run_id: str) -> Any:
    return await call_sync(
        Run.objects.values_list("lease_expires_at", flat=True).get,
        pk=run_id,
        on=Executor.THREAD_SENSITIVE,
    )


async def test_a_workers_leases_are_renewed_with_redis_hung(
    live_server_factory: LiveServerFactory,
    own_redis: Any,  # noqa: F811 (the fixture)
    user: Any,
) -> None:
    """The worker's maintenance loop renews its runs' leases, and looks at Redis too (whether
    it lost the worker's groups): that look is bounded, so a hung Redis never lets the leases
    expire (another worker's reaper, or `reap_runs`, would then end the runs `error`)."""
    redis, redis_url = own_redis
    lease = 2.0
    server = live_server_factory.start(REDIS_URL=redis_url, DEERFLOW_RUN_LEASE_SECONDS=str(lease))
    async with api_of(server, user, answer_within=HUNG_LAYER_ANSWER) as api:
        thread_id = (await api.post("/threads", json={})).json()["thread_id"]
        body = {"assistant_id": "slow", "input": LONG_RUN}
        run_id = (await api.post(f"/threads/{thread_id}/runs", json=body)).json()["run_id"]
        await wait_for_status(run_id, Run.Status.RUNNING)
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            renewed_beyond = await lease_of(run_id) + timedelta(seconds=3 * lease)
            # Renewed every third of a lease: within the bound unless it waited on Redis.
            async with asyncio.timeout(HUNG_LAYER_ANSWER):
                while (now := await lease_of(run_id)) and now < renewed_beyond:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            assert await status_of(run_id) == Run.Status.RUNNING
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        await api.post(f"/threads/{thread_id}/runs/{run_id}/cancel", params={"wait": 1})
    server.stop()
