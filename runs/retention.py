"""Retention: what `manage.py cleanup` deletes, in bounded batches of short transactions.

Four kinds of data go, each in batches of at most `batch_size` rows of the kind it walks, each
batch its own transaction, so a live server keeps serving meanwhile:
- threads past their TTL (`Thread.expires_at`), with everything they own (runs, events, feedback,
  checkpoints), unless busy, with an active run or with its state being updated;
- finished runs (and what they own: events, feedback) that ended more than `run_days` days ago;
- stored stream events (replay buffers) of runs that ended more than the stream retention ago;
- checkpoints whose thread no longer exists.

On PostgreSQL the batches of concurrent cleanups take turns (an advisory lock per kind), and
rows are locked `FOR UPDATE SKIP LOCKED` before they go: a row some request is working on is left
for the next cleanup, and a cleanup never waits on a request. Counts are rows actually deleted, so
nothing is counted twice.
"""

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from deerflow_site.dbcompat import advisory_xact_lock
from feedback.models import Feedback
from runs.engine import (
    delete_checkpoints_of_threads,
    expired_stream_events,
    orphan_checkpoint_thread_ids,
)
from runs.models import Run, RunEvent, RunStreamEvent
from threads.models import Thread
from threads.services import lock_runs_of_threads

#: The kinds `clear_expired` reports, by the model label Django's delete() counts under.
REPORTED_KINDS = {
    Thread._meta.label: "threads",
    Run._meta.label: "runs",
    RunEvent._meta.label: "journal events",
    Feedback._meta.label: "feedback",
    RunStreamEvent._meta.label: "stream events",
}
CHECKPOINTS = "checkpoints"
#: Each kind's batches of concurrent cleanups take turns (pg_advisory_xact_lock keys).
LOCK_KEYS = {
    "threads": 0x6465657266000001,
    "runs": 0x6465657266000002,
    "stream events": 0x6465657266000003,
    "checkpoints": 0x6465657266000004,
}


@dataclass(frozen=True)
class Retention:
    """How long things are kept.

    `run_days`: finished runs older than this many days go (None or 0: kept forever);
    `stream_seconds`: stored stream events of runs ended longer ago go; `batch_size`: rows per
    transaction (≥ 1).
    """

    run_days: float | None
    stream_seconds: float
    batch_size: int

    @classmethod
    def from_settings(cls, **overrides: Any) -> "Retention":
        """The retention of RUN_RETENTION_DAYS, STREAM_RETENTION_SECONDS and CLEANUP_BATCH_SIZE,
        with the non-None `overrides` (a command's flags) applied."""
        values = {
            "run_days": settings.RUN_RETENTION_DAYS,
            "stream_seconds": settings.STREAM_RETENTION_SECONDS,
            "batch_size": settings.CLEANUP_BATCH_SIZE,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def clear_expired(
    *, retention: Retention, dry_run: bool = False, now: datetime | None = None
) -> dict[str, int]:
    """Delete what is past its retention; returns the rows deleted per kind (`threads`,
    `runs`, `journal events`, `feedback`, `stream events`, `checkpoints`; each present, 0 when
    none).

    With `dry_run` the batches run inside one transaction that is rolled back at the end: the
    counts are exactly what would go, nothing changes (and the rows stay locked until then).
    """
    now = now or timezone.now()
    with transaction.atomic() if dry_run else contextlib.nullcontext():
        totals = _clear_expired(retention=retention, now=now)
        if dry_run:
            transaction.set_rollback(True)
    return {kind: totals[kind] for kind in [*REPORTED_KINDS.values(), CHECKPOINTS]}


def _clear_expired(*, retention: Retention, now: datetime) -> Counter[str]:
    size = max(1, retention.batch_size)
    totals = _in_batches(
        "threads",
        lambda after, limit: _expired_thread_ids(now, after, limit),
        _delete_threads,
        size,
    )
    if retention.run_days:
        cutoff = now - timedelta(days=retention.run_days)
        totals += _in_batches(
            "runs", lambda after, limit: _finished_run_ids(cutoff, after, limit), _delete_runs, size
        )
    totals += _in_batches(
        "stream events",
        lambda after, limit: _expired_stream_event_ids(now, retention.stream_seconds, after, limit),
        _delete_stream_events,
        size,
    )
    totals += _in_batches(
        CHECKPOINTS, _orphan_checkpoint_thread_ids, _delete_orphan_checkpoints, size
    )
    return totals


def _in_batches(
    kind: str,
    select: Callable[[Any, int], Sequence[Any]],
    delete: Callable[[Sequence[Any]], Counter[str]],
    size: int,
) -> Counter[str]:
    """Walk the keys `select(after, limit)` gives (ascending, past the last batch's), one
    transaction per batch: take the kind's turn, lock, delete, commit."""
    total: Counter[str] = Counter()
    after: Any = None
    while True:
        with transaction.atomic():
            advisory_xact_lock(LOCK_KEYS[kind])
            keys = select(after, size)
            if not keys:
                return total
            total += delete(keys)
        after = keys[-1]


def _counted(deleted: tuple[int, dict[str, int]]) -> Counter[str]:
    return Counter(
        {REPORTED_KINDS[label]: n for label, n in deleted[1].items() if label in REPORTED_KINDS}
    )


def _after(queryset: Any, after: Any) -> Any:
    return queryset if after is None else queryset.filter(pk__gt=after)


# --- Threads past their TTL ----------------------------------------------------------------


def _expired_thread_ids(now: datetime, after: str | None, limit: int) -> list[str]:
    idle = (
        Thread.objects.filter(expires_at__lt=now)
        .exclude(status=Thread.Status.BUSY)
        .exclude(state_updating_until__gt=now)  # its update's checkpoint would outlive it
        .exclude(Exists(Run.objects.active().filter(thread=OuterRef("pk"))))
    )
    locked = _after(idle, after).select_for_update(skip_locked=True).order_by("pk")
    return list(locked.values_list("pk", flat=True)[:limit])


def _delete_threads(thread_ids: Sequence[str]) -> Counter[str]:
    lock_runs_of_threads(thread_ids)
    counts = _counted(Thread.objects.filter(pk__in=thread_ids).delete())
    # In the same transaction: a thread is never gone while its checkpoints stay.
    counts[CHECKPOINTS] += delete_checkpoints_of_threads(list(thread_ids))
    return counts


# --- Finished runs ---------------------------------------------------------------------------


def _finished_run_ids(cutoff: datetime, after: Any, limit: int) -> list[Any]:
    finished = Run.objects.exclude(status__in=Run.ACTIVE_STATUSES).filter(ended_at__lt=cutoff)
    # The thread's row too: a thread being deleted (by the API, another cleanup) is skipped,
    # so that two deletions never wait on each other's cascades.
    locked = (
        _after(finished, after)
        .select_related("thread")
        .select_for_update(skip_locked=True, of=("self", "thread"))
        .only("pk", "thread__thread_id")
        .order_by("pk")
    )
    return [run.pk for run in locked[:limit]]


def _delete_runs(run_ids: Sequence[Any]) -> Counter[str]:
    return _counted(Run.objects.filter(pk__in=run_ids).delete())


# --- Stream replay buffers -------------------------------------------------------------------


def _expired_stream_event_ids(
    now: datetime, retention_seconds: float, after: int | None, limit: int
) -> list[int]:
    expired = expired_stream_events(now=now, retention_seconds=retention_seconds)
    locked = _after(expired, after).select_for_update(skip_locked=True, of=("self",))
    return list(locked.order_by("pk").values_list("pk", flat=True)[:limit])


def _delete_stream_events(event_ids: Sequence[int]) -> Counter[str]:
    return _counted(RunStreamEvent.objects.filter(pk__in=event_ids).delete())


# --- Checkpoints without a thread ------------------------------------------------------------


def _orphan_checkpoint_thread_ids(after: str | None, limit: int) -> list[str]:
    return orphan_checkpoint_thread_ids(
        thread_table=Thread._meta.db_table, after=after or "", limit=limit
    )


def _delete_orphan_checkpoints(thread_ids: Sequence[str]) -> Counter[str]:
    return Counter({CHECKPOINTS: delete_checkpoints_of_threads(list(thread_ids))})
