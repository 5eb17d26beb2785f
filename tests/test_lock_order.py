"""Row locks of threads and runs, against each other and against the foreign-key checks of the
rows that reference them, on PostgreSQL: no interleaving of a cancel, a bulk cancel, the reaper
and a run's journal can deadlock (PostgreSQL would end one of them with DeadlockDetected: a 500
for a client's cancel, a failed write for the worker).

Each test holds one side part-way through its transaction on a connection of its own, starts
the other on another thread, waits until PostgreSQL shows it waiting for a lock, then lets the
first go on: both must finish.
"""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from feedback.services import create_feedback
from runs.cancellation import cancel_run, cancel_runs
from runs.engine import queue
from runs.exceptions import RunNotFound
from runs.journal.lifecycle import run_started
from runs.journal.store import _allocate_seq_sql, _event_rows, _insert_events_sql, record_events
from runs.models import Run, RunEvent, RunStreamEvent
from runs.services import delete_run
from runs.sql import lock_thread
from tests.engine_support import make_thread, pending_run
from threads.models import Thread
from threads.services import delete_thread

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="SQLite serialises writers: no row locks"
    ),
    pytest.mark.django_db(transaction=True),
]

#: Generous for a loaded CI machine: the waits below end as soon as their condition holds.
WITHIN = 60.0


@pytest.fixture
def on_other_connections() -> Iterator[Callable[..., Future]]:
    """Run functions on threads of their own (each with its own database connection)."""
    pool = ThreadPoolExecutor(max_workers=2)

    def closing(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    yield lambda function, *args, **kwargs: pool.submit(closing, function, *args, **kwargs)
    pool.shutdown(wait=True)


def until_a_backend_waits_for_a_lock() -> None:
    deadline = time.monotonic() + WITHIN
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "nobody waited for a lock"
            time.sleep(0.01)


def running_run(*, thread: Any, user: Any) -> Run:
    run = pending_run(thread=thread, user=user)
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING,
        worker_id="test-worker",
        started_at=timezone.now(),
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    run.refresh_from_db()
    return run


def journal_write_in_two_steps(
    *, run: Run, counted: threading.Event, go_on: threading.Event
) -> None:
    """`record_events` of one event, paused between taking its seq and inserting the event."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_allocate_seq_sql(), [run.thread_id, 1])
        (seq,) = cursor.fetchone()
        counted.set()
        assert go_on.wait(WITHIN)
        run_key = Run._meta.pk.get_db_prep_value(run.pk, connection)
        rows = _event_rows(run.thread_id, run_key, int(seq), [run_started(run)], connection)
        cursor.execute(_insert_events_sql(1), rows)


def test_a_journal_write_and_a_cancel_of_a_pending_run_of_its_thread_both_finish(
    user: Any, on_other_connections: Any
) -> None:
    # The worker's journal of the running run takes the thread's next seq (the counter row),
    # then inserts its event, whose foreign key checks the thread's row; the cancel of the
    # pending run locks the thread's row, then takes a seq for its `run.cancel` event.
    thread = make_thread(user=user)
    running = running_run(thread=thread, user=user)
    waiting = pending_run(thread=thread, user=user)
    record_events(thread_id=thread.pk, run_id=running.pk, entries=[run_started(running)])
    counted, go_on = threading.Event(), threading.Event()

    journal = on_other_connections(
        journal_write_in_two_steps, run=running, counted=counted, go_on=go_on
    )
    assert counted.wait(WITHIN)
    cancel = on_other_connections(cancel_run, run=waiting, action=Run.CancelAction.INTERRUPT)
    until_a_backend_waits_for_a_lock()
    go_on.set()

    journal.result(WITHIN)
    assert cancel.result(WITHIN).status == Run.Status.INTERRUPTED
    assert RunEvent.objects.filter(thread_id=thread.pk).count() == 3


def test_a_bulk_cancel_waiting_for_a_thread_holds_none_of_its_runs(
    user: Any, on_other_connections: Any
) -> None:
    # Whoever holds a thread's row (admission, a run's end, a cancel) may lock its runs next:
    # a bulk cancel locks the thread's row before its runs, as they do.
    thread = make_thread(user=user)
    running = running_run(thread=thread, user=user)
    locked, go_on = threading.Event(), threading.Event()

    def hold_the_thread_then_lock_its_run() -> None:
        with transaction.atomic():
            lock_thread(thread.pk)
            locked.set()
            assert go_on.wait(WITHIN)
            assert Run.objects.select_for_update(no_key=True).filter(pk=running.pk).exists()

    holder = on_other_connections(hold_the_thread_then_lock_its_run)
    assert locked.wait(WITHIN)
    bulk = on_other_connections(
        cancel_runs, user=user, action=Run.CancelAction.INTERRUPT, thread_id=thread.pk
    )
    until_a_backend_waits_for_a_lock()
    go_on.set()

    holder.result(WITHIN)
    assert bulk.result(WITHIN) == 1


def test_the_reaper_and_a_cancel_of_the_reaped_run_both_finish(
    user: Any, on_other_connections: Any
) -> None:
    # The reaper locks the expired run, then writes its `run.error` event (whose foreign key
    # checks the thread's row); a cancel locks the thread's row, then the run's.
    thread = make_thread(user=user)
    expired = running_run(thread=thread, user=user)
    Run.objects.filter(pk=expired.pk).update(lease_expires_at=timezone.now() - timedelta(1))
    locked, go_on = threading.Event(), threading.Event()

    def cancel_holding_the_thread() -> Any:
        with transaction.atomic():
            lock_thread(thread.pk)
            locked.set()
            assert go_on.wait(WITHIN)
            return cancel_run(run=expired, action=Run.CancelAction.INTERRUPT)

    cancel = on_other_connections(cancel_holding_the_thread)
    assert locked.wait(WITHIN)
    reaper = on_other_connections(queue.reap_expired)
    until_a_backend_waits_for_a_lock()
    go_on.set()

    reaped = reaper.result(WITHIN)
    cancel_outcome = cancel.exception(WITHIN) or cancel.result()
    # Whichever came first decided: reaped (the cancel then finds it ended: 409), or cancelled.
    assert [run.pk for run in reaped] == [expired.pk] or cancel_outcome.pk == expired.pk


def finished_run(*, thread: Any, user: Any) -> Run:
    run = pending_run(thread=thread, user=user)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCESS, ended_at=timezone.now())
    run.refresh_from_db()
    record_events(thread_id=thread.pk, run_id=run.pk, entries=[run_started(run)])
    return run


def delete_thread_in_two_steps(
    *, thread: Any, run: Run, locked: threading.Event, go_on: threading.Event
) -> None:
    """`delete_thread`, paused after its lock of the thread's row and the deletion of the run's
    events (what Django's collector deletes before the runs)."""
    with transaction.atomic():
        Thread.objects.select_for_update().filter(pk=thread.pk).first()
        RunEvent.objects.filter(run_id=run.pk).delete()
        locked.set()
        assert go_on.wait(WITHIN)
        delete_thread(thread=thread)


@pytest.mark.parametrize("write", ["feedback", "run deletion"])
def test_a_thread_deletion_and_a_write_on_one_of_its_runs_both_finish(
    user: Any, on_other_connections: Any, write: str
) -> None:
    # A feedback's insert checks its foreign keys run first, thread next; a run's deletion locked
    # the run, then deleted its events: both waited holding the run's row for what the thread's
    # deletion (thread, events, then runs) held, and PostgreSQL ended one of them, a 500. Both
    # now take the thread's row first.
    thread = make_thread(user=user)
    run = finished_run(thread=thread, user=user)
    locked, go_on = threading.Event(), threading.Event()

    deletion = on_other_connections(
        delete_thread_in_two_steps, thread=thread, run=run, locked=locked, go_on=go_on
    )
    assert locked.wait(WITHIN)
    if write == "feedback":
        other = on_other_connections(create_feedback, user=user, run=run, rating=1)
    else:
        other = on_other_connections(delete_run, run=run)
    until_a_backend_waits_for_a_lock()
    go_on.set()

    deletion.result(WITHIN)
    assert isinstance(other.exception(WITHIN), RunNotFound)  # the thread went first
    assert not Thread.objects.filter(pk=thread.pk).exists()


def test_a_late_stream_event_of_a_run_never_breaks_its_threads_deletion(
    user: Any, on_other_connections: Any
) -> None:
    # A cancelled run is no longer active, so its thread may go, while its worker still stores
    # its last stream events. Committed between the deletion's DELETE of the run's events and
    # that of the run, the event broke the foreign key: the deletion was an IntegrityError, a
    # 500 (2 in 30 rounds over HTTP). The deletion now locks the runs first: the late write
    # waits for it (given a second here), then fails, as a write for a deleted run should.
    thread = make_thread(user=user)
    run = finished_run(thread=thread, user=user)
    inserted, go_on = threading.Event(), threading.Event()

    def late_stream_event() -> None:
        with transaction.atomic():
            RunStreamEvent.objects.create(run_id=run.pk, seq=1, event="values", data="{}")
            inserted.set()
            assert go_on.wait(WITHIN)

    def delete_letting_the_write_in_after_the_events() -> None:
        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            result = execute(sql, params, many, context)
            if sql.startswith("DELETE") and RunStreamEvent._meta.db_table in sql:
                go_on.set()
                wait((writer,), timeout=1)  # commits at once unless the run is locked
            return result

        with connection.execute_wrapper(wrapper):
            delete_thread(thread=thread)

    writer = on_other_connections(late_stream_event)
    assert inserted.wait(WITHIN)
    deletion = on_other_connections(delete_letting_the_write_in_after_the_events)

    deletion.result(WITHIN)
    assert isinstance(writer.exception(WITHIN), IntegrityError)
    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert not RunStreamEvent.objects.exists()
