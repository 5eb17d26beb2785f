"""The end of a run in the database: its final status, and its thread's status and state.

A thread is `busy` while any of its runs is pending or running; otherwise `error` when its last
run failed (a user's cancel is not a failure), `interrupted` when the checkpoint waits on nodes
or interrupts, else `idle`. Thread.values / interrupts mirror the latest checkpoint.
"""

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from langgraph.pregel import Pregel

import runs.sql as sql
from deerflow_site.dbcompat import jsonb_storable, storable_json
from runs.engine.serialization import to_jsonable
from runs.journal.store import JournalBatch, journal_with, record_batch
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

    No value of the graph's, its model's or its tools' keeps the run from ending: when the end
    cannot be written as it is (a value the database or the JSON encoder refuses: an integer
    beyond 64 bits, NaN, NUL, a lone surrogate, nesting a thousand deep, an unknown object...),
    the transaction is rolled back and made again with the values made storable
    (`dbcompat.storable_json`, token counts clamped), then without the journal, then without
    the state too; each retry is logged. No savepoint on the common path.

    Returns False (and changes nothing) when the run is no longer running under this worker's
    claim, e.g. when the reaper has ended it already. Raises only what the last attempt, which
    holds nothing of the graph's, raises (the database gone).
    """
    try:
        return _finish_run(run=run, outcome=outcome, snapshot=snapshot, journal=journal)
    except Exception:
        logger.exception("run %s: its end could not be written as it was", run.pk)
    if outcome.error is not None:
        outcome = dataclasses.replace(outcome, error=storable_json(outcome.error))
    if snapshot is not None:
        snapshot = dataclasses.replace(
            snapshot,
            values=storable_json(snapshot.values),
            interrupts=storable_json(snapshot.interrupts),
        )
    if journal:
        try:
            return _finish_run(
                run=run, outcome=outcome, snapshot=snapshot, journal=journal.storable()
            )
        except Exception:
            logger.exception("run %s: the end of its journal could not be written", run.pk)
    if snapshot is not None:
        try:
            return _finish_run(run=run, outcome=outcome, snapshot=snapshot, journal=None)
        except Exception:
            logger.exception("run %s: its thread's state could not be written", run.pk)
    return _finish_run(run=run, outcome=outcome, snapshot=None, journal=None)


def _finish_run(
    *, run: Run, outcome: RunOutcome, snapshot: ThreadSnapshot | None, journal: JournalBatch | None
) -> bool:
    now = timezone.now()
    with transaction.atomic():
        # The thread row first: admission locks it too, so the count of active runs below
        # sees any run admitted meanwhile. Where the transaction holds the database's write
        # lock from its start (SQLite), that is already so: the row is read only for its
        # interrupts, which a snapshot replaces (and the run's row, read next, is the thread's).
        if snapshot is None or sql.locks_rows():
            interrupts = sql.lock_thread(run.thread_id)
        else:
            interrupts = {}
        updated = sql.end_run(
            run,
            status=outcome.status,
            error=outcome.error,
            rolled_back=outcome.rolled_back,
            now=now,
        )
        if not updated or interrupts is None:
            return updated
        # The journal goes with the thread's UPDATE where it can (PostgreSQL: one statement);
        # a failure leaves the transaction, rolling it back.
        journal_write = None
        if journal:
            journal_write = journal_with(thread_id=run.thread_id, run_id=run.pk, batch=journal)
            if journal_write is None:
                record_batch(thread_id=run.thread_id, run_id=run.pk, batch=journal)
        _settle_thread(
            run.thread_id,
            interrupts=interrupts,
            failed=outcome.status == Run.Status.ERROR,
            snapshot=snapshot,
            error=outcome.error,
            now=now,
            with_=journal_write,
        )
    return True


def settle_thread(*, thread_id: str, failed: bool, error: dict[str, str] | None = None) -> None:
    """Recompute a thread's status after a run ended without a fresh snapshot (reaper, cancel)."""
    with transaction.atomic():
        interrupts = sql.lock_thread(thread_id)
        if interrupts is not None:
            _settle_thread(
                thread_id,
                interrupts=interrupts,
                failed=failed,
                snapshot=None,
                error=error,
                now=timezone.now(),
            )


def _settle_thread(
    thread_id: str,
    *,
    interrupts: dict[str, Any],
    failed: bool,
    snapshot: ThreadSnapshot | None,
    error: dict[str, str] | None,
    now: Any,
    with_: tuple[str, list[Any]] | None = None,
) -> None:
    waiting = snapshot.waiting if snapshot is not None else bool(interrupts)
    # `busy` instead when a run of the thread is active: the UPDATE decides (row locked).
    status = thread_status(has_active_runs=False, failed=failed, waiting=waiting)
    state = None
    if snapshot is not None:
        state = (jsonb_storable(snapshot.values), jsonb_storable(snapshot.interrupts))
    sql.settle_thread_row(
        thread_id, status=status, error=error if failed else None, now=now, state=state, with_=with_
    )
