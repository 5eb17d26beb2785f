"""The end of a run in the database: its final status, and its thread's status and state.

A thread is `busy` while any of its runs is pending or running; otherwise `error` when its last
run failed (a user's cancel is not a failure), `interrupted` when the checkpoint waits on nodes
or interrupts, else `idle`. Thread.values / interrupts mirror the latest checkpoint.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from langgraph.pregel import Pregel

from deerflow_site.dbcompat import jsonb_storable
from runs.engine.serialization import to_jsonable
from runs.journal.store import JournalBatch, record_batch
from runs.models import Run
from threads.models import Thread

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadSnapshot:
    """What the thread row mirrors of the latest checkpoint."""

    values: Any = None
    interrupts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    waiting: bool = False  # pending `next` nodes or interrupts


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended."""

    status: str
    error: dict[str, str] | None = None
    rolled_back: bool = False
    cancel_action: str = ""  # interrupt | rollback: a user's cancel stopped it


async def snapshot_of(graph: Pregel, thread_id: str) -> ThreadSnapshot:
    """The thread's latest state from the checkpointer (JSON-safe)."""
    state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    if state is None or state.config is None or not state.created_at:
        return ThreadSnapshot(values=None)
    interrupts = {
        task.id: [to_jsonable(interrupt) for interrupt in task.interrupts]
        for task in state.tasks
        if task.interrupts
    }
    return ThreadSnapshot(
        values=to_jsonable(state.values),
        interrupts=interrupts,
        waiting=bool(state.next) or bool(interrupts),
    )


def thread_status(*, has_active_runs: bool, failed: bool, waiting: bool) -> str:
    if has_active_runs:
        return Thread.Status.BUSY
    if failed:
        return Thread.Status.ERROR
    if waiting:
        return Thread.Status.INTERRUPTED
    return Thread.Status.IDLE


def finish_run(
    *,
    run: Run,
    outcome: RunOutcome,
    snapshot: ThreadSnapshot | None,
    journal: JournalBatch | None = None,
) -> bool:
    """Persist the run's final status and its thread's status and state, in one transaction,
    with the rest of its journal (`journal`: its last events and token usage).

    Returns False (and changes nothing) when the run is no longer running under this worker's
    claim, e.g. when the reaper has ended it already.
    """
    now = timezone.now()
    with transaction.atomic():
        # The thread row first: admission locks it too, so the count of active runs below
        # sees any run admitted meanwhile.
        interrupts = _lock_thread(run.thread_id)
        updated = Run.objects.filter(
            pk=run.pk, status=Run.Status.RUNNING, worker_id=run.worker_id
        ).update(
            status=outcome.status,
            error=outcome.error,
            rolled_back=outcome.rolled_back,
            ended_at=now,
            lease_expires_at=None,
            updated_at=now,
        )
        if not updated or interrupts is None:
            return bool(updated)
        if journal:
            _record_journal(run, journal)
        _settle_thread(
            run.thread_id,
            interrupts=interrupts,
            failed=outcome.status == Run.Status.ERROR,
            snapshot=snapshot,
            error=outcome.error,
            now=now,
        )
    return True


def _record_journal(run: Run, journal: JournalBatch) -> None:
    """The run's last journal events, in a savepoint: a journal that cannot be written is
    logged, never a reason for the run not to end."""
    try:
        record_batch(thread_id=run.thread_id, run_id=run.pk, batch=journal)
    except DatabaseError:
        logger.exception("run %s: the end of its journal could not be written", run.pk)


def settle_thread(*, thread_id: str, failed: bool, error: dict[str, str] | None = None) -> None:
    """Recompute a thread's status after a run ended without a fresh snapshot (reaper, cancel)."""
    with transaction.atomic():
        interrupts = _lock_thread(thread_id)
        if interrupts is not None:
            _settle_thread(
                thread_id,
                interrupts=interrupts,
                failed=failed,
                snapshot=None,
                error=error,
                now=timezone.now(),
            )


def _lock_thread(thread_id: str) -> dict[str, Any] | None:
    """Lock the thread's row; its interrupts (None: the thread is gone)."""
    rows = Thread.objects.select_for_update().filter(pk=thread_id).values_list("interrupts")
    return next((interrupts for (interrupts,) in rows), None)


def _settle_thread(
    thread_id: str,
    *,
    interrupts: dict[str, Any],
    failed: bool,
    snapshot: ThreadSnapshot | None,
    error: dict[str, str] | None,
    now: Any,
) -> None:
    has_active_runs = Run.objects.active().filter(thread_id=thread_id).exists()
    waiting = snapshot.waiting if snapshot is not None else bool(interrupts)
    fields: dict[str, Any] = {
        "status": thread_status(has_active_runs=has_active_runs, failed=failed, waiting=waiting),
        "error": error if failed else None,
        "updated_at": now,
    }
    if snapshot is not None:
        fields.update(
            values=jsonb_storable(snapshot.values),
            interrupts=jsonb_storable(snapshot.interrupts),
            state_updated_at=now,
        )
    Thread.objects.filter(pk=thread_id).update(**fields)
