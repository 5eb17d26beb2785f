"""The run queue: pending rows of the runs table, claimed under a lease.

A pending run is eligible when it is due (`run_at` passed), the oldest pending run of its thread
(FIFO per thread) and on a thread with no running run. Workers claim eligible runs fairly across
users: the oldest eligible run of the user with the fewest running runs goes first, so that one
user's backlog never holds back the next user's run (within a batch, a user's second run counts
the first as running). PostgreSQL locks the rows with `FOR NO KEY UPDATE SKIP LOCKED` so that
concurrent workers pass over each other's candidates;
SQLite's IMMEDIATE transactions serialise writers, where SKIP LOCKED is moot. The partial unique
index "one running run per thread" is the last word: losing that race is an IntegrityError, and
the claim moves on to the next candidate.

Sync ORM functions with short transactions: workers call them on the engine's database thread
(`deerflow_site.bridge`).
"""

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.utils import timezone

import runs.sql as sql
from deerflow_site.bridge import call_async
from deerflow_site.dbcompat import hot_cursor, row_lock_clause
from deerflow_site.logs import run_fields
from deerflow_site.rows import from_row, model_columns
from runs.engine import bus
from runs.engine.finish import settle_thread
from runs.engine.streaming import (
    out_of_band_events,
    publish_stream_events,
    store_stream_events,
)
from runs.journal.lifecycle import run_recovered
from runs.journal.store import record_events
from runs.models import Run

logger = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 5
WORKER_LOST = {
    "error": "WorkerLost",
    "message": "the worker executing this run stopped (lease expired)",
}


# Kept as SQL: the ORM takes longer to compile these queries than the database to run them, and
# every claim and idle poll runs them. The same text serves SQLite and PostgreSQL. Each eligible
# row is the oldest pending run of its thread, so a batch never holds two of one thread. The
# statuses are literals (`runs.sql`): the subqueries then read the partial indexes of running
# and active runs, a few rows, rather than every run of a thread or a user.
ELIGIBLE_WHERE = """
    r.status = {pending} AND r.run_at <= %(now)s
      AND NOT EXISTS (
        SELECT 1 FROM {runs} o WHERE o.thread_id = r.thread_id AND o.status = {running})
      AND NOT EXISTS (
        SELECT 1 FROM {runs} o WHERE o.thread_id = r.thread_id AND o.status = {pending}
          AND (o.created_at < r.created_at
               OR (o.created_at = r.created_at AND o.run_id < r.run_id)))
"""
ANY_ELIGIBLE_SQL = "SELECT 1 FROM {runs} r WHERE " + ELIGIBLE_WHERE + " LIMIT 1"
# A direct start's two reads in one statement: whether the thread has a pending or running run,
# and whether a run is eligible now (which a direct start would overtake).
THREAD_ACTIVE_AND_ANY_ELIGIBLE_SQL = (
    "SELECT EXISTS (SELECT 1 FROM {runs} a WHERE a.thread_id = %(thread_id)s"
    " AND (a.status = {pending} OR a.status = {running})), EXISTS (" + ANY_ELIGIBLE_SQL + ")"
)
# An idle poll in one statement: is a run eligible now, when is the next one not yet due, and
# is any run pending at all (one waiting behind its thread's running run, or its user's turn).
IDLE_SQL = (
    "SELECT (" + ANY_ELIGIBLE_SQL + "),"
    " (SELECT MIN(p.run_at) FROM {runs} p WHERE p.status = {pending} AND p.run_at > %(now)s),"
    " (SELECT 1 FROM {runs} p WHERE p.status = {pending} LIMIT 1)"
)
# A user's turn: their running runs plus the rank of this run among their eligible ones. The
# window function stays in a subquery, as PostgreSQL refuses FOR UPDATE beside one.
FAIR_CANDIDATES_SQL = (
    """
    SELECT {columns} FROM {runs} r JOIN (
      SELECT r.run_id AS run_id,
             ROW_NUMBER() OVER (PARTITION BY r.user_id ORDER BY r.created_at, r.run_id)
             + (SELECT COUNT(*) FROM {runs} u
                WHERE u.user_id = r.user_id AND u.status = {running}) AS turn
      FROM {runs} r WHERE """
    + ELIGIBLE_WHERE
    + """
    ) fair ON fair.run_id = r.run_id
    WHERE r.status = {pending}
    ORDER BY fair.turn, r.created_at, r.run_id
    LIMIT %(limit)s
"""
)


@dataclass(frozen=True)
class Claim:
    """Runs claimed at once, and when the next pending run not yet due becomes due;
    `queue_empty`: an idle poll found no pending run at all."""

    runs: list[Run]
    next_due: datetime | None = None
    queue_empty: bool = False


def _queue_sql(
    db: BaseDatabaseWrapper, template: str, now: datetime, limit: int
) -> tuple[str, dict[str, object]]:
    """A queue statement's text and parameters for `db` (this thread's connection, looked up
    once by the caller)."""
    params: dict[str, object] = {
        "now": db.ops.adapt_datetimefield_value(now),
        "limit": limit,
    }
    return _queue_text(template), params


@functools.cache
def _queue_text(template: str) -> str:
    """A queue statement's text, made once (the table and the statuses never change)."""
    return template.format(
        runs=Run._meta.db_table,
        pending=sql.PENDING,
        running=sql.RUNNING,
        columns=model_columns(Run, "r"),
    )


def any_eligible(now: datetime) -> bool:
    """Whether some pending run is eligible now (a plain read: no write lock)."""
    db = connections[DEFAULT_DB_ALIAS]
    sql, params = _queue_sql(db, ANY_ELIGIBLE_SQL, now, 1)
    with hot_cursor(db) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def thread_active_and_any_eligible(thread_id: str, now: datetime) -> tuple[bool, bool]:
    """(whether the thread has a pending or running run, whether some pending run is eligible
    now): one plain read, no row locked."""
    db = connections[DEFAULT_DB_ALIAS]
    text, params = _queue_sql(db, THREAD_ACTIVE_AND_ANY_ELIGIBLE_SQL, now, 1)
    with hot_cursor(db) as cursor:
        cursor.execute(text, {**params, "thread_id": thread_id})
        active, eligible = cursor.fetchone()
    return bool(active), bool(eligible)


def _lock_candidates(now: datetime, limit: int) -> list[Run]:
    """Up to `limit` eligible runs in fair order, row-locked where the database can (inside a
    transaction)."""
    db = connections[DEFAULT_DB_ALIAS]
    sql, params = _queue_sql(db, FAIR_CANDIDATES_SQL, now, limit)
    if db.features.has_select_for_update_skip_locked:
        sql += row_lock_clause(db) + " OF r SKIP LOCKED"
    with hot_cursor(db) as cursor:
        cursor.execute(sql, params)
        return [from_row(Run, row, db=db) for row in cursor.fetchall()]


def claim_runs(*, worker_id: str, limit: int, eligible: bool = False) -> Claim:
    """Claim up to `limit` runnable runs for `worker_id` in one transaction (status running,
    under a fresh lease). When fewer were found, also says when the next pending run is due.
    `eligible`: the caller has just seen an eligible run (`idle()`), so the first attempt
    skips that read."""
    claimed: list[Run] = []
    for attempt in range(CLAIM_ATTEMPTS):
        now = timezone.now()
        # A plain read first: an idle poll must not take SQLite's write lock.
        if not (eligible and attempt == 0) and not any_eligible(now):
            break
        try:
            with transaction.atomic():
                claimed = _start(_lock_candidates(now, limit), worker_id=worker_id, now=now)
            break
        except IntegrityError:
            # Another worker started a run of one of those threads first: look again.
            logger.debug("claim lost the one-running-run-per-thread race; retrying")
    return Claim(runs=claimed, next_due=next_run_at() if len(claimed) < limit else None)


def idle() -> Claim | None:
    """None when some pending run is eligible now (worth a claim); else an empty claim saying
    when the next pending run becomes due, and whether none is pending at all. Reads only."""
    db = connections[DEFAULT_DB_ALIAS]
    query, params = _queue_sql(db, IDLE_SQL, timezone.now(), 1)
    with hot_cursor(db) as cursor:
        cursor.execute(query, params)
        eligible, next_due, any_pending = cursor.fetchone()
    if eligible is not None:
        return None
    return Claim(runs=[], next_due=sql.run_at_from_db(next_due), queue_empty=any_pending is None)


def _start(candidates: list[Run], *, worker_id: str, now: datetime) -> list[Run]:
    """Mark locked candidates running under `worker_id` (one UPDATE, in the lock's transaction)."""
    if not candidates:
        return []
    lease_expires_at = now + timedelta(seconds=settings.RUN_LEASE_SECONDS)
    sql.start_runs(
        [run.pk for run in candidates],
        worker_id=worker_id,
        now=now,
        lease_expires_at=lease_expires_at,
    )
    for run in candidates:
        run.status, run.worker_id, run.started_at = Run.Status.RUNNING, worker_id, now
        run.attempt += 1
        run.lease_expires_at, run.updated_at = lease_expires_at, now
    return candidates


def renew_leases(*, worker_id: str, run_ids: list[UUID]) -> dict[UUID, str]:
    """Extend the leases of the worker's running runs; return their cancel flags.

    A run missing from the result is no longer this worker's (ended, or reaped after its lease
    expired): the worker must stop executing it.
    """
    if not run_ids:
        return {}
    now = timezone.now()
    mine = Run.objects.filter(pk__in=run_ids, worker_id=worker_id, status=Run.Status.RUNNING)
    with transaction.atomic():
        mine.update(lease_expires_at=now + timedelta(seconds=settings.RUN_LEASE_SECONDS))
        return dict(mine.values_list("run_id", "cancel_action"))


def cancel_flags(*, worker_id: str, run_ids: list[UUID]) -> dict[UUID, str]:
    """The cancel flags of the worker's running runs (a read only, for frequent checks)."""
    if not run_ids:
        return {}
    mine = Run.objects.filter(pk__in=run_ids, worker_id=worker_id, status=Run.Status.RUNNING)
    return dict(mine.values_list("run_id", "cancel_action"))


def next_run_at() -> datetime | None:
    """When the earliest pending run not yet due becomes due (None: there is none).

    Due runs are left out: one still pending waits for its thread's running run, whose end
    wakes its worker; counting it would make idle workers poll every few milliseconds.
    """
    return sql.next_run_at(timezone.now())


def expired_runs(*, now: datetime | None = None) -> QuerySet[Run]:
    """Running runs whose worker stopped renewing their lease."""
    return Run.objects.filter(
        status=Run.Status.RUNNING, lease_expires_at__lt=now or timezone.now()
    ).order_by("lease_expires_at")


def reap_expired(*, now: datetime | None = None) -> list[Run]:
    """End every run whose lease expired: status error (WorkerLost), thread freed, stream ended."""
    now = now or timezone.now()
    reaped: list[tuple[Run, list[bus.StreamEvent]]] = []
    for run_id in list(expired_runs(now=now).values_list("run_id", flat=True)):
        run = _reap_one(run_id, now)
        if run is not None:
            events = out_of_band_events([("error", WORKER_LOST), ("end", None)])
            if run.resumable:
                store_stream_events(run.pk, events)
            reaped.append((run, events))
    if reaped:
        call_async(_announce_reaped, reaped)
    return [run for run, _ in reaped]


def _reap_one(run_id: UUID, now: datetime) -> Run | None:
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(pk=run_id, status=Run.Status.RUNNING, lease_expires_at__lt=now)
            .first()
        )
        if run is None:  # renewed, ended or being reaped by someone else meanwhile
            return None
        run.status = Run.Status.ERROR
        run.error = WORKER_LOST
        run.ended_at = now
        run.lease_expires_at = None
        run.save(update_fields=["status", "error", "ended_at", "lease_expires_at", "updated_at"])
        record_events(
            thread_id=run.thread_id, run_id=run.pk, entries=[run_recovered(error=WORKER_LOST)]
        )
        logger.warning(
            "reaped run %s of thread %s (worker %s lost)",
            run.pk,
            run.thread_id,
            run.worker_id,
            extra=run_fields(run),
        )
    settle_thread(thread_id=run.thread_id, failed=True, error=WORKER_LOST)
    return run


async def _announce_reaped(reaped: list[tuple[Run, list[bus.StreamEvent]]]) -> None:
    for run, events in reaped:
        await publish_stream_events(run=run, events=events, error=WORKER_LOST)
    await bus.wake_workers()
