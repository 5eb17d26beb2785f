"""Admission under races: simultaneous creates on one thread, each on its own connection."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from deerflow_site.bridge import Executor, call_sync
from runs.admission import admit_run
from runs.create_serializers import parse_run_create
from runs.exceptions import ThreadBusyReject
from runs.models import Run
from tests.fixtures import token_for
from threads.services import create_thread

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 50
RACERS = 2


def race(user, thread_id: str, body: dict, racers: int = RACERS) -> list[object]:
    """Admit `racers` runs at the same instant from as many threads; their results or errors."""
    barrier = threading.Barrier(racers)

    def attempt() -> object:
        try:
            barrier.wait()
            return admit_run(user=user, thread_id=thread_id, request=parse_run_create(body))
        except Exception as exc:  # the outcome is what the test checks
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(racers) as pool:
        return list(pool.map(lambda _: attempt(), range(racers)))


def test_simultaneous_reject_creates_admit_exactly_one(user):
    for round_number in range(ROUNDS):
        thread, _ = create_thread(user=user, thread_id=f"race-{round_number}")
        outcomes = race(user, thread.thread_id, {"assistant_id": "echo"})
        admitted = [outcome for outcome in outcomes if isinstance(outcome, Run)]
        refused = [outcome for outcome in outcomes if not isinstance(outcome, Run)]
        assert len(admitted) == 1, outcomes
        assert all(isinstance(error, ThreadBusyReject) for error in refused), refused
        assert Run.objects.filter(thread=thread).count() == 1


def test_simultaneous_creates_on_an_unknown_thread_create_it_once(user):
    for round_number in range(10):
        outcomes = race(user, f"fresh-{round_number}", {"assistant_id": "echo"})
        assert sum(isinstance(outcome, Run) for outcome in outcomes) == 1, outcomes
        assert Run.objects.filter(thread_id=f"fresh-{round_number}").count() == 1


def test_simultaneous_enqueue_creates_admit_all(user):
    thread, _ = create_thread(user=user, thread_id="queue")
    outcomes = race(user, "queue", {"assistant_id": "echo", "multitask_strategy": "enqueue"}, 4)
    assert all(isinstance(outcome, Run) for outcome in outcomes), outcomes
    assert Run.objects.filter(thread=thread, status="pending").count() == 4


@pytest.mark.live
async def test_simultaneous_reject_creates_through_two_servers_admit_exactly_one(
    live_server_factory, user
):
    # No worker, so that no run can finish (and free the thread) between the two requests.
    servers = [live_server_factory.start(DEERFLOW_EMBEDDED_WORKER="false") for _ in range(2)]
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    clients = [
        httpx.AsyncClient(
            base_url=server.api_url, headers={"Authorization": f"Bearer {key}"}, trust_env=False
        )
        for server in servers
    ]
    try:
        for round_number in range(20):
            thread_id = f"two-servers-{round_number}"
            answers = await asyncio.gather(
                *(
                    client.post(f"/threads/{thread_id}/runs", json={"assistant_id": "echo"})
                    for client in clients
                )
            )
            assert sorted(answer.status_code for answer in answers) == [200, 409], [
                answer.text for answer in answers
            ]
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            server.stop()
