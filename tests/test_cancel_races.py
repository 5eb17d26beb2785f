"""A client's cancel racing the run's end, its thread's deletion and its start in another
process, on PostgreSQL: each side is held part-way through its transaction with a real row lock
while the cancel waits for it; the cancel then answers what the database says (409, 404, 202),
never a 500."""

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from runs.engine import queue
from runs.models import Run
from tests.engine_support import make_thread, pending_run
from tests.fixtures import client_for
from tests.test_lock_order import WITHIN, running_run, until_a_backend_waits_for_a_lock
from threads.models import Thread

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="SQLite serialises writers: no row locks"
    ),
    pytest.mark.django_db(transaction=True),
]


def until_the_cancel_waits() -> None:
    """`until_a_backend_waits_for_a_lock`, polled from a connection outside the holder's
    transaction (inside one, PostgreSQL shows the same pg_stat_activity until it ends)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_poll_on_own_connection).result(WITHIN * 2)


def _poll_on_own_connection() -> None:
    try:
        until_a_backend_waits_for_a_lock()
    finally:
        connections.close_all()


@pytest.fixture
def cancel_in_background(user: Any) -> Iterator[Callable[..., Future]]:
    """POST a cancel of `run` as `user` on a thread of its own (with its own connection)."""
    pool = ThreadPoolExecutor(max_workers=1)
    client = client_for(user)  # its token made here, before a test holds any row

    def cancel(run: Run, wait: int) -> Any:
        try:
            return client.post(f"/api/threads/{run.thread_id}/runs/{run.pk}/cancel?wait={wait}")
        finally:
            connections.close_all()

    yield lambda run, wait: pool.submit(cancel, run, wait)
    pool.shutdown(wait=True)


@pytest.mark.parametrize("wait", [0, 1])
def test_a_cancel_that_waited_for_the_runs_end_answers_409(
    user: Any, cancel_in_background: Any, wait: int
) -> None:
    run = running_run(thread=make_thread(user=user), user=user)
    with transaction.atomic():
        Thread.objects.select_for_update(no_key=True).get(pk=run.thread_id)  # as a run's end
        answer = cancel_in_background(run, wait)
        until_the_cancel_waits()
        Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCESS, ended_at=timezone.now())

    response = answer.result(WITHIN)
    assert response.status_code == 409, response.content
    assert "detail" in response.json()


@pytest.mark.parametrize("wait", [0, 1])
def test_a_cancel_that_waited_while_the_run_went_with_its_thread_answers_404(
    user: Any, cancel_in_background: Any, wait: int
) -> None:
    """A stateless run (`on_completion=delete`) ends and its thread is deleted meanwhile."""
    run = running_run(thread=make_thread(user=user), user=user)
    with transaction.atomic():
        thread = Thread.objects.select_for_update().get(pk=run.thread_id)
        answer = cancel_in_background(run, wait)
        until_the_cancel_waits()
        Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCESS, ended_at=timezone.now())
        thread.delete()

    response = answer.result(WITHIN)
    assert response.status_code == 404, response.content
    assert "detail" in response.json()


def test_a_cancel_that_waited_for_a_workers_claim_flags_the_started_run(
    user: Any, cancel_in_background: Any
) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)
    with transaction.atomic():
        [claimed] = queue._lock_candidates(timezone.now(), 1)  # the claim's row lock
        answer = cancel_in_background(run, 0)
        until_the_cancel_waits()
        queue._start([claimed], worker_id="test-worker", now=timezone.now())

    response = answer.result(WITHIN)
    assert response.status_code == 202, response.content
    run.refresh_from_db()
    assert (run.status, run.cancel_action) == (Run.Status.RUNNING, Run.CancelAction.INTERRUPT)
