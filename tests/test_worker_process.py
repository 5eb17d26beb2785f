"""`manage.py runs_worker` and `manage.py reap_runs` as real processes on the test database."""

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from runs.engine import queue
from runs.models import Run
from tests.engine_support import make_thread, pending_run
from tests.live import CommandProcess, wait_until
from threads.models import Thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

FAST_LEASES = {"DEERFLOW_RUN_LEASE_SECONDS": "1", "DEERFLOW_RUN_POLL_SECONDS": "0.1"}
LONG_RUN = {"graph_id": "slow", "input": {"steps": 200, "delay": 0.1}}


@pytest.fixture
def start_worker(
    start_worker_process: Callable[..., CommandProcess],
) -> Callable[..., CommandProcess]:
    """`manage.py runs_worker --concurrency 2` with fast leases: `start_worker(**env)`."""
    return lambda **env: start_worker_process("--concurrency", "2", **{**FAST_LEASES, **env})


def status_of(run: Run) -> str:
    return Run.objects.values_list("status", flat=True).get(pk=run.pk)


def test_worker_process_executes_queued_runs(user: Any, start_worker: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, input={})

    start_worker()

    wait_until(lambda: status_of(run) == Run.Status.SUCCESS, "the run to succeed")


def test_killed_worker_run_is_reaped_and_its_thread_takes_new_runs(
    user: Any, start_worker: Any, manage_py: Any
) -> None:
    thread = make_thread(user=user)
    run = pending_run(thread=thread, user=user, **LONG_RUN)
    worker = start_worker()
    wait_until(lambda: status_of(run) == Run.Status.RUNNING, "the run to start")

    worker.kill()
    wait_until(  # what reap_runs looks for: the lease (1 s) the killed worker last renewed ran out
        lambda: Run.objects.filter(pk=run.pk, lease_expires_at__lt=timezone.now()).exists(),
        "the killed worker's lease to run out",
    )
    result = manage_py("reap_runs", env=FAST_LEASES)

    assert "reaped 1 run(s)" in result.stdout
    run.refresh_from_db()
    assert run.status == Run.Status.ERROR
    assert run.error == queue.WORKER_LOST
    thread.refresh_from_db()
    assert thread.status == Thread.Status.ERROR
    follower = pending_run(thread=thread, user=user, input={})
    start_worker()
    wait_until(lambda: status_of(follower) == Run.Status.SUCCESS, "a new run on the thread")


def test_a_killed_workers_runs_get_their_webhook_and_thread_deletion_from_the_reaper(
    user: Any, start_worker: Any, webhook_receiver: Any
) -> None:
    kept = make_thread(user=user)
    stateless = make_thread(user=user)
    hooked = pending_run(thread=kept, user=user, webhook=webhook_receiver.url(), **LONG_RUN)
    temporary = pending_run(thread=stateless, user=user, on_completion="delete", **LONG_RUN)
    worker = start_worker()
    wait_until(
        lambda: {status_of(hooked), status_of(temporary)} == {Run.Status.RUNNING},
        "both runs to start",
    )

    worker.kill()
    start_worker(DEERFLOW_ON_COMPLETION_DELETE_SECONDS="0")  # reaps them

    [payload] = webhook_receiver.wait_for(1)
    assert payload["run_id"] == str(hooked.pk)
    assert payload["status"] == Run.Status.ERROR
    assert payload["error"] == queue.WORKER_LOST
    wait_until(
        lambda: not Thread.objects.filter(pk=stateless.pk).exists(),
        "the stateless run's thread to be deleted",
    )
    assert (
        wait_until(lambda: Run.objects.get(pk=hooked.pk).webhook_status, "the webhook's outcome")
        == Run.WebhookStatus.DELIVERED
    )


def test_reap_runs_sends_the_reaped_runs_webhook(
    user: Any, manage_py: Any, webhook_receiver: Any
) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, webhook=webhook_receiver.url())
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING, worker_id="gone", lease_expires_at="2000-01-01T00:00:00Z"
    )

    result = manage_py("reap_runs")

    assert "reaped 1 run(s)" in result.stdout
    [payload] = webhook_receiver.received
    assert (payload["run_id"], payload["status"]) == (str(run.pk), Run.Status.ERROR)


def test_reap_runs_dry_run_lists_without_changing_anything(user: Any, manage_py: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, input={})
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING, worker_id="gone", lease_expires_at="2000-01-01T00:00:00Z"
    )

    result = manage_py("reap_runs", "--dry-run")

    assert f"would reap run {run.pk}" in result.stdout
    assert status_of(run) == Run.Status.RUNNING


def test_sigterm_stops_the_worker_and_ends_its_unfinished_runs(
    user: Any, start_worker: Any
) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, **LONG_RUN)
    worker = start_worker(DEERFLOW_WORKER_SHUTDOWN_SECONDS="0.5")
    wait_until(lambda: status_of(run) == Run.Status.RUNNING, "the run to start")

    os.kill(worker.pid, signal.SIGTERM)

    assert worker.process.wait(timeout=30) == 0
    run.refresh_from_db()
    assert run.status == Run.Status.ERROR
    assert run.error["error"] == "WorkerShutdown"


def test_runs_worker_refuses_a_concurrency_below_one(manage_py: Any) -> None:
    result = manage_py("runs_worker", "--concurrency", "0", check=False)

    assert result.returncode != 0
    assert "--concurrency must be a finite number at least 1" in result.stderr


def test_runs_worker_reports_bad_arguments_as_a_command_error() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--concurrency must be a finite number at least 1"):
        call_command("runs_worker", concurrency=0)
