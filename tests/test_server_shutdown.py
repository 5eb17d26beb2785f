"""SIGTERM stops the web process gracefully: its embedded worker's runs finish for up to
DEERFLOW_WORKER_SHUTDOWN_SECONDS, then end `error` (WorkerShutdown), as `runs_worker`'s do."""

from typing import Any

import httpx
import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.engine.executor import WORKER_SHUTDOWN
from runs.models import Run
from tests.engine_support import fetch_run, fetch_thread, make_thread
from tests.fixtures import token_for
from tests.live import LiveServerFactory
from threads.models import Thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

#: Ends within the shutdown's grace (about 1 s); goes on for a minute.
SHORT = {"assistant_id": "slow", "input": {"steps": 10, "delay": 0.1}}
LONG = {"assistant_id": "slow", "input": {"steps": 600, "delay": 0.1}}


async def test_sigterm_lets_the_embedded_workers_runs_finish_then_ends_the_rest(
    live_server_factory: LiveServerFactory, user: Any
) -> None:
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    threads = [await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE) for _ in "ab"]
    server = live_server_factory.start(DEERFLOW_WORKER_SHUTDOWN_SECONDS="5")
    try:
        async with httpx.AsyncClient(
            base_url=server.api_url,
            headers={"Authorization": f"Bearer {key}"},
            trust_env=False,
            timeout=60.0,
        ) as client:
            created = []
            for thread, body in zip(threads, (SHORT, LONG), strict=True):
                answer = await client.post(f"/threads/{thread.pk}/runs", json=body)
                assert answer.status_code == 200, answer.text
                created.append(answer.json())
        assert [run["status"] for run in created] == ["running", "running"]
    finally:
        server.process.terminate()
        exit_code = await call_sync(server.process.wait, 60, on=Executor.BLOCKING)

    short, long = [await fetch_run(run["run_id"]) for run in created]
    assert exit_code == 0
    assert short.status == Run.Status.SUCCESS
    assert (long.status, long.error) == (Run.Status.ERROR, WORKER_SHUTDOWN)
    assert [(await fetch_thread(thread.pk)).status for thread in threads] == [
        Thread.Status.IDLE,
        Thread.Status.ERROR,
    ]
