"""The run queue: claims (FIFO per thread, one running run per thread), leases and reaping."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs.engine import queue
from runs.models import Run, RunStreamEvent
from tests.engine_support import claim_next, make_thread, pending_run
from threads.models import Thread

pytestmark = pytest.mark.django_db


def test_claim_takes_the_oldest_pending_run_and_leases_it(user: Any) -> None:
    first = pending_run(thread=make_thread(user=user), user=user)
    pending_run(thread=make_thread(user=user), user=user)

    claimed = claim_next(worker_id="w1")

    assert claimed is not None and claimed.pk == first.pk
    first.refresh_from_db()
    assert first.status == Run.Status.RUNNING
    assert first.worker_id == "w1"
    assert first.attempt == 1
    assert first.started_at is not None
    assert first.lease_expires_at > timezone.now()


def test_claim_returns_none_when_queue_is_empty(user: Any) -> None:
    assert claim_next(worker_id="w1") is None


def test_claim_is_fifo_per_thread_and_skips_a_thread_with_a_running_run(user: Any) -> None:
    thread = make_thread(user=user)
    first = pending_run(thread=thread, user=user)
    second = pending_run(thread=thread, user=user)
    other = pending_run(thread=make_thread(user=user), user=user)

    assert claim_next(worker_id="w1").pk == first.pk
    # `second` waits for `first` to end: the next claim takes the other thread's run.
    assert claim_next(worker_id="w2").pk == other.pk
    assert claim_next(worker_id="w3") is None

    Run.objects.filter(pk=first.pk).update(status=Run.Status.SUCCESS)
    assert claim_next(worker_id="w1").pk == second.pk


def test_a_batch_claim_takes_the_oldest_run_of_each_free_thread_in_one_go(user: Any) -> None:
    busy, fifo, plain = (make_thread(user=user) for _ in range(3))
    running = pending_run(thread=busy, user=user)
    Run.objects.filter(pk=running.pk).update(status=Run.Status.RUNNING)
    waiting = pending_run(thread=busy, user=user)
    first, second = pending_run(thread=fifo, user=user), pending_run(thread=fifo, user=user)
    other = pending_run(thread=plain, user=user)
    later = pending_run(
        thread=make_thread(user=user), user=user, run_at=timezone.now() + timedelta(hours=1)
    )

    claim = queue.claim_runs(worker_id="w1", limit=5)

    assert [run.pk for run in claim.runs] == [first.pk, other.pk]
    assert all(run.status == Run.Status.RUNNING and run.attempt == 1 for run in claim.runs)
    assert claim.next_due == later.run_at  # fewer than asked for: when to look again
    assert set(Run.objects.filter(worker_id="w1").values_list("pk", flat=True)) == {
        first.pk,
        other.pk,
    }
    assert Run.objects.get(pk=second.pk).status == Run.Status.PENDING
    assert Run.objects.get(pk=waiting.pk).status == Run.Status.PENDING


def test_a_full_batch_claim_does_not_look_for_due_times(user: Any) -> None:
    runs = [pending_run(thread=make_thread(user=user), user=user) for _ in range(3)]

    claim = queue.claim_runs(worker_id="w1", limit=2)

    assert [run.pk for run in claim.runs] == [run.pk for run in runs[:2]]
    assert claim.next_due is None


def test_claim_takes_the_run_of_the_user_with_fewest_running_runs_first(
    user: Any, other_user: Any
) -> None:
    for _ in range(2):
        started = pending_run(thread=make_thread(user=user), user=user)
        Run.objects.filter(pk=started.pk).update(status=Run.Status.RUNNING)
    older = pending_run(thread=make_thread(user=user), user=user)
    newer = pending_run(thread=make_thread(user=other_user), user=other_user)

    assert claim_next(worker_id="w1").pk == newer.pk
    assert claim_next(worker_id="w1").pk == older.pk


def test_a_batch_claim_takes_turns_between_users(user: Any, other_user: Any) -> None:
    backlog = [pending_run(thread=make_thread(user=user), user=user) for _ in range(3)]
    late = pending_run(thread=make_thread(user=other_user), user=other_user)

    claim = queue.claim_runs(worker_id="w1", limit=2)

    assert [run.pk for run in claim.runs] == [backlog[0].pk, late.pk]


def test_claim_skips_runs_not_yet_due(user: Any) -> None:
    later = pending_run(
        thread=make_thread(user=user), user=user, run_at=timezone.now() + timedelta(hours=1)
    )

    assert claim_next(worker_id="w1") is None
    assert queue.next_run_at() == later.run_at


def test_younger_run_of_a_thread_waits_for_an_older_run_not_yet_due(user: Any) -> None:
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user, run_at=timezone.now() + timedelta(hours=1))
    pending_run(thread=thread, user=user)

    assert claim_next(worker_id="w1") is None


def test_database_refuses_two_running_runs_on_one_thread(user: Any) -> None:
    thread = make_thread(user=user)
    first = pending_run(thread=thread, user=user)
    second = pending_run(thread=thread, user=user)
    Run.objects.filter(pk=first.pk).update(status=Run.Status.RUNNING)

    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=second.pk).update(status=Run.Status.RUNNING)


def test_claim_that_loses_the_running_race_moves_on(user: Any, monkeypatch: Any) -> None:
    thread = make_thread(user=user)
    contested = pending_run(thread=thread, user=user)
    other = pending_run(thread=make_thread(user=user), user=user)
    # Another worker has just started a run of `thread`...
    Run.objects.create(
        thread=thread,
        assistant_id=contested.assistant_id,
        graph_id="echo",
        status=Run.Status.RUNNING,
        run_at=timezone.now(),
    )
    real_lock_candidates = queue._lock_candidates
    stale_views = [[Run.objects.get(pk=contested.pk)]]

    def candidates(now: Any, limit: int) -> Any:
        # ...which our first look did not see yet (it read before that worker committed).
        return stale_views.pop() if stale_views else real_lock_candidates(now, limit)

    monkeypatch.setattr(queue, "_lock_candidates", candidates)

    claimed = claim_next(worker_id="w1")

    assert claimed is not None and claimed.pk == other.pk
    contested.refresh_from_db()
    assert contested.status == Run.Status.PENDING


def test_renew_extends_lease_and_reports_cancel_flags(user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)
    claim_next(worker_id="w1")
    Run.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() + timedelta(seconds=1), cancel_action="rollback"
    )

    flags = queue.renew_leases(worker_id="w1", run_ids=[run.pk])

    assert flags == {run.pk: "rollback"}
    run.refresh_from_db()
    assert run.lease_expires_at > timezone.now() + timedelta(seconds=10)


def test_renew_leaves_out_runs_the_worker_no_longer_holds(user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)
    claim_next(worker_id="w1")

    assert queue.renew_leases(worker_id="someone-else", run_ids=[run.pk]) == {}


@pytest.mark.usefixtures("fresh_channel_layer")
def test_reaper_ends_a_run_whose_lease_expired_and_frees_its_thread(user: Any) -> None:
    thread = make_thread(user=user)
    run = pending_run(thread=thread, user=user, resumable=True)
    claim_next(worker_id="dead-worker")
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    reaped = queue.reap_expired()

    assert [r.pk for r in reaped] == [run.pk]
    run.refresh_from_db()
    assert run.status == Run.Status.ERROR
    assert run.error == queue.WORKER_LOST
    assert run.ended_at is not None
    thread.refresh_from_db()
    assert thread.status == Thread.Status.ERROR
    stored = list(RunStreamEvent.objects.filter(run=run).order_by("seq"))
    assert [e.event for e in stored] == ["error", "end"]
    assert stored[1].data == "null"


@pytest.mark.usefixtures("fresh_channel_layer")
def test_reaper_leaves_runs_with_a_live_lease_alone(user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)
    claim_next(worker_id="w1")

    assert queue.reap_expired() == []
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING


@pytest.mark.usefixtures("fresh_channel_layer")
def test_reaped_thread_with_a_queued_run_stays_busy_and_the_queued_run_can_start(
    user: Any,
) -> None:
    thread = make_thread(user=user)
    run = pending_run(thread=thread, user=user)
    queued = pending_run(thread=thread, user=user)
    claim_next(worker_id="dead-worker")
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    queue.reap_expired()

    thread.refresh_from_db()
    assert thread.status == Thread.Status.BUSY
    assert claim_next(worker_id="w2").pk == queued.pk


@override_settings(RUN_LEASE_SECONDS=0.01)
def test_claimed_run_expires_once_its_lease_is_not_renewed(user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)
    claim_next(worker_id="w1")

    assert list(queue.expired_runs(now=timezone.now() + timedelta(seconds=1))) == [run]


def claim_all_concurrently(workers: int, claims_each: int) -> list[Any]:
    """Each of `workers` threads (own database connection) claims up to `claims_each` runs."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def claim_some(index: int) -> list[Any]:
        try:
            claimed = []
            for _ in range(claims_each):
                run = claim_next(worker_id=f"w{index}")
                if run is not None:
                    claimed.append(run.pk)
            return claimed
        finally:
            connection.close()

    with ThreadPoolExecutor(workers) as pool:
        return [pk for claimed in pool.map(claim_some, range(workers)) for pk in claimed]


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_claim_each_run_once_and_one_per_thread(user: Any) -> None:
    threads = [make_thread(user=user) for _ in range(4)]
    runs = [pending_run(thread=t, user=user) for t in threads for _ in range(3)]

    claimed = claim_all_concurrently(workers=4, claims_each=3)

    assert len(claimed) == len(set(claimed)) == 4  # one per thread: the rest wait their turn
    running = Run.objects.filter(status=Run.Status.RUNNING)
    assert sorted(running.values_list("thread_id", flat=True)) == sorted(t.pk for t in threads)
    oldest = {
        t.pk: min((r for r in runs if r.thread_id == t.pk), key=lambda r: r.created_at)
        for t in threads
    }
    assert set(claimed) == {r.pk for r in oldest.values()}


@pytest.mark.django_db(transaction=True)
def test_claim_passes_over_a_run_locked_by_another_worker(user: Any) -> None:
    """PostgreSQL: FOR UPDATE SKIP LOCKED, so a claim never waits on another worker's row."""
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers instead")
    locked = pending_run(thread=make_thread(user=user), user=user)
    free = pending_run(thread=make_thread(user=user), user=user)
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                Run.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(10)
        claimed = claim_next(worker_id="w1")
    finally:
        release.set()
        holder.join()

    assert claimed is not None and claimed.pk == free.pk


@override_settings(STREAM_RETENTION_SECONDS=3600)
def test_stored_events_go_once_their_run_ended_longer_ago_than_the_retention(user: Any) -> None:
    from runs.engine.streaming import purge_stream_events

    now = timezone.now()
    hours_ago = now - timedelta(hours=2)

    def run_with_events(*, status: str, ended_at: Any) -> Run:
        run = pending_run(thread=make_thread(user=user), user=user, resumable=True)
        Run.objects.filter(pk=run.pk).update(status=status, ended_at=ended_at)
        for seq in (1, 2):
            RunStreamEvent.objects.create(run=run, seq=seq, event="values", data="{}")
        RunStreamEvent.objects.filter(run=run).update(created_at=hours_ago)
        return run

    expired = run_with_events(status=Run.Status.SUCCESS, ended_at=hours_ago)
    recent = run_with_events(status=Run.Status.SUCCESS, ended_at=now - timedelta(minutes=5))
    long_running = run_with_events(status=Run.Status.RUNNING, ended_at=None)

    assert purge_stream_events(now=now) == 2

    left = set(RunStreamEvent.objects.values_list("run_id", flat=True))
    assert left == {recent.pk, long_running.pk}
    assert Run.objects.filter(pk=expired.pk).exists()  # the run itself is kept


def test_an_idle_poll_is_one_statement_saying_when_the_next_run_is_due(user: Any) -> None:
    later = pending_run(
        thread=make_thread(user=user), user=user, run_at=timezone.now() + timedelta(hours=1)
    )
    with CaptureQueriesContext(connection) as queries:
        idle = queue.idle()
    assert idle is not None and idle.runs == [] and idle.next_due == later.run_at
    assert len(queries) == 1

    due = pending_run(thread=make_thread(user=user), user=user)
    assert queue.idle() is None  # a claim is worth it
    claim = queue.claim_runs(worker_id="w1", limit=1, eligible=True)
    assert [run.pk for run in claim.runs] == [due.pk]


def test_an_idle_poll_of_an_empty_queue_has_nothing_due(user: Any) -> None:
    idle = queue.idle()
    assert idle is not None and idle.next_due is None


def test_a_claimed_run_is_loaded_as_the_orm_loads_it(user: Any) -> None:
    pending_run(
        thread=make_thread(user=user), user=user, resumable=True, input={"text": "é", "n": [1.5]}
    )

    claimed = claim_next(worker_id="w1")

    stored = Run.objects.get(pk=claimed.pk)
    for field in Run._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
    assert not claimed._state.adding
