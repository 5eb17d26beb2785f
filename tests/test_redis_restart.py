"""A Redis restarted under running web processes and workers (PostgreSQL + Redis).

A Redis restarted without its data keeps no group: the processes' listening channels are in
none of them any more. Streams open across processes must hear the run's events again once
Redis is back (not only its `end`, from the database, when the run is over), and workers must
be in their wake-up and control groups again. Each test starts a Redis of its own, so that the
restart touches nothing else of the session.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from deerflow_site.api.errors import CHANNEL_LAYER_UNAVAILABLE
from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus
from runs.models import Run
from tests.cluster import ON_PRODUCTION_STACK, consecutive_free_ports
from tests.fixtures import sdk_client, token_for
from tests.live import LiveServerFactory, StartWatch, poll_until, spawn, wait_until, watched
from tests.test_multiprocess import first_part

pytestmark = [
    pytest.mark.skipif(
        not ON_PRODUCTION_STACK or shutil.which("redis-server") is None,
        reason="needs PostgreSQL, Redis and redis-server (scripts/test's PostgreSQL phase)",
    ),
    pytest.mark.multiprocess,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]

LONG_RUN = {"steps": 400, "delay": 0.1}  # 40 s: a restart and a rejoin fit well within it


class PrivateRedis:
    """A throwaway redis-server on a port of its own, without snapshots (a restart loses all)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = consecutive_free_ports(1)
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        log_path = self.log_dir / "redis.log"
        self.process = spawn(command, env=dict(os.environ), log_path=log_path, append=True)
        wait_until(self._answers, "redis-server to answer", StartWatch(self.process.pid))

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            assert self.process is not None and self.process.poll() is None, "redis-server exited"
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # without snapshots: its data is gone
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def token(user: Any) -> str:
    return token_for(user)


def wakeup_group_members(server: PrivateRedis) -> list[bytes]:
    return server.client().zrange(bus.layer()._group_key(bus.WAKEUP_GROUP), 0, -1)


async def test_streams_and_workers_hear_the_bus_again_after_redis_restarts(
    live_server_factory: LiveServerFactory,
    private_redis: PrivateRedis,
    start_worker_process: Any,
    token: str,
    closing: Any,
) -> None:
    on_private = {"REDIS_URL": private_redis.url, "DEERFLOW_EMBEDDED_WORKER": "false"}
    web_a = live_server_factory.start(**on_private)
    web_b = live_server_factory.start(**on_private)
    start_worker_process(REDIS_URL=private_redis.url)
    sdk_a = sdk_client(closing, web_a.api_url, token)
    sdk_b = sdk_client(closing, web_b.api_url, token)
    thread_id = (await sdk_a.threads.create())["thread_id"]
    run = await sdk_a.runs.create(thread_id, "slow", input=LONG_RUN, stream_mode="custom")
    joined = sdk_b.runs.join_stream(thread_id, run["run_id"])
    before = await first_part(joined, "custom")  # the worker executes it, B hears it by Redis

    await call_sync(private_redis.restart, on=Executor.BLOCKING)

    # B's stream goes on with live events, before the run's end.
    after = await first_part(joined, "custom")
    assert after.data["tick"] > before.data["tick"]
    stored = await call_sync(Run.objects.get, pk=run["run_id"], on=Executor.THREAD_SENSITIVE)
    assert stored.status == Run.Status.RUNNING
    # The worker is in its wake-up group again (it was in none after the restart).
    await poll_until(
        lambda: call_sync(wakeup_group_members, private_redis, on=Executor.BLOCKING),
        "the worker to join its wake-up group again",
    )

    await sdk_b.runs.cancel(thread_id, run["run_id"], wait=True)
    rest = [part async for part in joined]
    assert rest[-1].event == "end"
    values = await watched(
        sdk_a.runs.wait(thread_id, "slow", input={"steps": 2, "delay": 0}), "a new run"
    )
    assert values["count"] == 2


async def test_requests_that_need_the_bus_answer_503_while_redis_is_down(
    live_server_factory: LiveServerFactory, private_redis: PrivateRedis, token: str
) -> None:
    """A stream, a wait and a join cannot listen without the layer: a 503 with Retry-After,
    as for a database down, and no run is admitted meanwhile; once Redis is back they work."""
    web = live_server_factory.start(REDIS_URL=private_redis.url)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"assistant_id": "slow", "input": {"steps": 1, "delay": 0}}
    async with httpx.AsyncClient(base_url=web.api_url, headers=headers, timeout=60) as client:
        thread_id = (await client.post("/threads", json={})).json()["thread_id"]
        await call_sync(private_redis.stop, on=Executor.BLOCKING)

        for path in ("runs/stream", "runs/wait"):
            answer = await client.post(f"/threads/{thread_id}/{path}", json=body)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json() == {"detail": CHANNEL_LAYER_UNAVAILABLE}
            assert answer.headers["Retry-After"] == "5"
        assert (await client.get(f"/threads/{thread_id}/runs")).json() == []

        await call_sync(private_redis.start, on=Executor.BLOCKING)
        answer = await client.post(f"/threads/{thread_id}/runs/wait", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["count"] == 1
