"""A cancel needs no channel layer: with the server's Redis stopped, a cancel is still accepted
(202), a cancel that waits still answers once the run has stopped (204, by reading the run's row),
and the worker still stops the runs (it reads the cancel flag when it renews their lease). With
the server's Redis hung (stopped by SIGSTOP: it takes connections and answers nothing), no
request waits on it.

The server gets a Redis of its own (scripts/services.py's), so that stopping it leaves the
suite's own alone; the database is the suite's.
"""

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import port_for
import pytest

from deerflow_site.api.errors import CHANNEL_LAYER_UNAVAILABLE
from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from tests.cluster import ON_PRODUCTION_STACK
from tests.engine_support import wait_for_status
from tests.fixtures import token_for
from tests.live import LiveServerFactory
from tests.test_health_live import services_module
from tests.waiting import in_database, read_until

pytestmark = [
    pytest.mark.skipif(not ON_PRODUCTION_STACK, reason="stops a Redis: the PostgreSQL phase"),
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]

#: A run that goes on long enough for anything to happen to it meanwhile (20 s).
LONG_RUN = {"steps": 200, "delay": 0.1}
WITHIN = 60.0


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[Any]:
    """A Redis of the test's own: (its executor, its URL)."""
    services = services_module()
    try:
        redis_server = services.find_redis_server()
    except services.Unavailable as exc:
        pytest.skip(str(exc))
    tmp_path.chmod(0o711)
    executor, url = services.start_redis(tmp_path, port_for.select_random(), redis_server)
    yield executor, url
    if executor.running():
        executor.stop()


async def status_of(run_id: str) -> str:
    return await call_sync(
        Run.objects.values_list("status", flat=True).get, pk=run_id, on=Executor.THREAD_SENSITIVE
    )


@contextlib.asynccontextmanager
async def api_of(
    server: Any, user: Any, *, answer_within: float
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the server's API as `user`, which gives up after `answer_within` seconds."""
    token = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=server.api_url, headers=headers, timeout=answer_within, trust_env=False
    ) as api:
        yield api


async def test_cancels_are_answered_and_carried_out_with_the_channel_layer_down(
    live_server_factory: LiveServerFactory, own_redis: Any, user: Any
) -> None:
    redis, redis_url = own_redis
    server = live_server_factory.start(REDIS_URL=redis_url, DEERFLOW_RUN_LEASE_SECONDS="2")
    async with api_of(server, user, answer_within=WITHIN) as api:
        runs = []
        for _ in range(2):
            thread_id = (await api.post("/threads", json={})).json()["thread_id"]
            body = {"assistant_id": "slow", "input": LONG_RUN}
            run = (await api.post(f"/threads/{thread_id}/runs", json=body)).json()
            runs.append((thread_id, run["run_id"]))
        for _, run_id in runs:
            await wait_for_status(run_id, Run.Status.RUNNING)

        redis.stop()
        (thread_a, run_a), (thread_b, run_b) = runs
        asked = await api.post(f"/threads/{thread_a}/runs/{run_a}/cancel", params={"wait": 0})
        waited = await api.post(f"/threads/{thread_b}/runs/{run_b}/cancel", params={"wait": 1})

        assert asked.status_code == 202, asked.text
        assert waited.status_code == 204, waited.text
        assert await status_of(run_b) == Run.Status.INTERRUPTED
        await wait_for_status(run_a, Run.Status.INTERRUPTED)
    server.stop()


#: Well under the Redis socket's timeout (30 s, deerflow_site.settings), which a request that
#: waited on a hung Redis would take: the client gives up on any answer slower than this.
HUNG_LAYER_ANSWER = 15.0


async def test_a_hung_channel_layer_holds_up_no_request(
    live_server_factory: LiveServerFactory, own_redis: Any, user: Any
) -> None:
    """A Redis that takes connections and answers nothing (SIGSTOPped) holds up neither a
    cancel (its message to the worker, a cancelled pending run's `end`, a cancel's wait) nor an
    admission (its wake-up); the worker still stops the cancelled run, from its row."""
    redis, redis_url = own_redis
    server = live_server_factory.start(REDIS_URL=redis_url, DEERFLOW_RUN_LEASE_SECONDS="2")
    async with api_of(server, user, answer_within=HUNG_LAYER_ANSWER) as api:
        threads = [(await api.post("/threads", json={})).json()["thread_id"] for _ in range(3)]
        body = {"assistant_id": "slow", "input": LONG_RUN}
        running = (await api.post(f"/threads/{threads[0]}/runs", json=body)).json()["run_id"]
        later = {**body, "after_seconds": 600}
        pending = (await api.post(f"/threads/{threads[1]}/runs", json=later)).json()["run_id"]
        await wait_for_status(running, Run.Status.RUNNING)

        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            asked = await api.post(f"/threads/{threads[0]}/runs/{running}/cancel")
            waited = await api.post(
                f"/threads/{threads[1]}/runs/{pending}/cancel", params={"wait": 1}
            )
            admitted = await api.post(f"/threads/{threads[2]}/runs", json=later)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)

        assert asked.status_code == 202, asked.text
        assert waited.status_code == 204, waited.text
        assert admitted.status_code == 200, admitted.text
        assert await status_of(pending) == Run.Status.INTERRUPTED
        await wait_for_status(running, Run.Status.INTERRUPTED)
    server.stop()


async def test_a_hung_channel_layer_answers_503_to_what_must_listen_and_holds_up_no_wait(
    live_server_factory: LiveServerFactory, own_redis: Any, user: Any
) -> None:
    """With Redis hung, a request that cannot do without listening (a stream, a wait, a join, a
    thread's stream) answers the layer's 503 within `bus.SEND_SECONDS`, admitting no run, rather
    than waiting on the Redis socket's timeout; and a wait whose run ends meanwhile answers at
    once (closing its subscription never waits on the hung layer)."""
    redis, redis_url = own_redis
    server = live_server_factory.start(REDIS_URL=redis_url)
    async with api_of(server, user, answer_within=HUNG_LAYER_ANSWER) as api:
        threads = [(await api.post("/threads", json={})).json()["thread_id"] for _ in range(2)]
        body = {"assistant_id": "slow", "input": LONG_RUN}
        running = (await api.post(f"/threads/{threads[0]}/runs", json=body)).json()["run_id"]
        short = {"assistant_id": "slow", "input": {"steps": 30, "delay": 0.1}}
        waiting = asyncio.ensure_future(api.post(f"/threads/{threads[1]}/runs/wait", json=short))
        await wait_for_status(running, Run.Status.RUNNING)
        waited_run = Run.objects.filter(thread_id=threads[1], status=Run.Status.RUNNING)
        await read_until(in_database(waited_run.exists), "the waited run to be running")

        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            # At once: each waits for the layer's bound on its own, not one after the other.
            refused = await asyncio.gather(
                api.post(f"/threads/{threads[0]}/runs/stream", json=body),
                api.post(f"/threads/{threads[0]}/runs/wait", json=body),
                api.get(f"/threads/{threads[0]}/runs/{running}/join"),
                api.get(f"/threads/{threads[0]}/runs/{running}/stream"),
                api.get(f"/threads/{threads[0]}/stream"),
            )
            waited = await waiting
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)

        for answer in refused:
            assert answer.status_code == 503, (answer.request.url, answer.text)
            assert answer.json() == {"detail": CHANNEL_LAYER_UNAVAILABLE}
            assert answer.headers["Retry-After"].isdigit()
        assert waited.status_code == 200, waited.text
        assert waited.json()["count"] == 30
        runs = (await api.get(f"/threads/{threads[0]}/runs")).json()
        assert [run["run_id"] for run in runs] == [running]
        await api.post(f"/threads/{threads[0]}/runs/{running}/cancel")
    server.stop()
