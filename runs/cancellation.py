"""Cancelling runs: one run, many runs, a run whose client went away; the rules of each.

A pending run ends at once (it never starts: its `end` is stored and published after the commit);
a running one gets the cancel flag, and its worker hears the cancel on the bus or reads the flag
at its next lease renewal (`runs.engine.worker`), then stops the graph (`runs.engine.executor`).
Each cancel is one transaction with the thread row locked, like admission.
"""

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.logs import run_fields
from runs import selectors
from runs.after_run import delete_temporary_thread
from runs.engine import (
    bus,
    out_of_band_events,
    publish_stream_events,
    settle_thread,
    store_stream_events,
)
from runs.exceptions import RunNotCancellable, RunNotFound
from runs.journal.lifecycle import pending_run_cancelled
from runs.journal.store import record_events
from runs.models import Run
from threads.models import Thread
from threads.selectors import get_thread

logger = logging.getLogger(__name__)

#: Cancels started by disconnected clients, kept referenced until they finish.
_background: set[asyncio.Task] = set()


def cancel_run(*, run: Run, action: str) -> Run:
    """Stop a run: a pending one never starts; a running one is told to stop.

    Idempotent: a run already cancelled (`interrupted`) is returned as it is, as the deer-flow
    gateway answers a second Stop. RunNotCancellable (409) for a run that finished on its own
    (`success`, `error`, `timeout`); RunNotFound (404) when it is gone.
    """
    with transaction.atomic():
        Thread.objects.select_for_update(no_key=True).filter(pk=run.thread_id).first()
        locked = Run.objects.select_for_update(no_key=True).filter(pk=run.pk).first()
        if locked is None:
            raise RunNotFound()
        if locked.status == Run.Status.INTERRUPTED:
            return locked
        if not locked.is_active:
            raise RunNotCancellable()
        cancel_locked(run=locked, action=action)
        _release_thread(thread_id=locked.thread_id)
    return locked


def cancel_run_of_user(*, user: Any, thread_id: str, run_id: UUID, action: str) -> Run:
    """`cancel_run` of a run of a thread the user may change: RunNotFound (404) when there is
    none (or it went with its thread before the cancel locked it)."""
    run = selectors.get_run(user=user, thread_id=thread_id, run_id=run_id, action="change")
    return cancel_run(run=run, action=action)


def cancel_runs(
    *,
    user: Any,
    action: str,
    thread_id: str | None = None,
    run_ids: Iterable[UUID] | None = None,
    status: str | None = None,
) -> int:
    """Cancel many runs: those of one thread (all active, or `run_ids`), or all by status.

    Finished runs among them are skipped; returns how many were cancelled. The threads' rows
    are locked before their runs', as admission, a cancel and a run's end lock them.
    """
    with transaction.atomic():
        runs = Run.objects.select_for_update(no_key=True)
        if thread_id is not None:
            thread = get_thread(user=user, thread_id=thread_id, action="change", for_update=True)
            runs = runs.filter(thread=thread)
            if run_ids:
                wanted = set(run_ids)
                found = set(runs.filter(pk__in=wanted).values_list("pk", flat=True))
                if found != wanted:
                    raise RunNotFound()
                runs = runs.filter(pk__in=wanted)
            runs = runs.active()
        else:
            statuses = Run.ACTIVE_STATUSES if status == "all" else (status,)
            candidates = Run.objects.filter(
                status__in=statuses, thread__in=_changeable_threads(user)
            )
            # In one order, so that two bulk cancels never wait for each other's threads.
            thread_ids = sorted(set(candidates.values_list("thread_id", flat=True)))
            locked = Thread.objects.select_for_update(no_key=True).filter(pk__in=thread_ids)
            list(locked.order_by("pk").values_list("pk", flat=True))
            # A run admitted meanwhile on another thread is left out: it came after the cancel.
            runs = runs.filter(status__in=statuses, thread_id__in=thread_ids)
        cancelled = list(runs.order_by("created_at"))
        for run in cancelled:
            cancel_locked(run=run, action=action)
        for changed_thread_id in {run.thread_id for run in cancelled}:
            _release_thread(thread_id=changed_thread_id)
    return len(cancelled)


def _changeable_threads(user: Any) -> Any:
    return get_objects_for_user(
        user, "threads.change_thread", klass=Thread, accept_global_perms=True
    ).values("pk")


def cancel_locked(*, run: Run, action: str) -> None:
    """Cancel a locked active run: a pending one ends now, a running one gets the flag.

    The pending run's `end` is stored (resumable runs) and published after the commit; the
    worker of a running run hears the cancel on the bus, or reads the flag at its next renewal.
    """
    now = timezone.now()
    rolled_back = action == Run.CancelAction.ROLLBACK
    stopped = Run.objects.filter(pk=run.pk, status=Run.Status.PENDING).update(
        status=Run.Status.INTERRUPTED,
        cancel_action=action,
        rolled_back=rolled_back,
        ended_at=now,
        updated_at=now,
    )
    if stopped:
        run.status, run.cancel_action, run.rolled_back = Run.Status.INTERRUPTED, action, rolled_back
        record_events(
            thread_id=run.thread_id, run_id=run.pk, entries=[pending_run_cancelled(action=action)]
        )
        events = out_of_band_events([("end", None)])
        if run.resumable:
            store_stream_events(run.pk, events)
        bus.send_after_commit(publish_stream_events, run=run, events=events)
        if run.on_completion == Run.OnCompletion.DELETE:
            # No worker ends this run: its temporary thread goes as an ended run's would.
            bus.send_after_commit(_delete_temporary_thread_later, run=run)
        return
    Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
        cancel_action=action, updated_at=now
    )
    run.cancel_action = action
    bus.send_after_commit(
        bus.publish_cancel, run_id=run.pk, worker_id=run.worker_id or "", action=action
    )


def _release_thread(*, thread_id: str) -> None:
    """Recompute the thread's status once a cancel may have left it with no active run.

    A cancelled pending run never changed the thread's state, so the status comes from what the
    last executed run left: its error, or its pending interrupts.
    """
    error = Thread.objects.filter(pk=thread_id).values_list("error", flat=True).first()
    settle_thread(thread_id=thread_id, failed=bool(error), error=error)


def cancel_left_run(*, run_id: UUID) -> None:
    """Interrupt a run whose client went away (when it asked for that), on this thread: a run
    that has ended meanwhile, or is gone, is left as it is; a failure is logged, not raised."""
    run = selectors.run_by_id(run_id=run_id)
    if run is None:
        return
    try:
        cancel_run(run=run, action=Run.CancelAction.INTERRUPT)
    except (RunNotCancellable, RunNotFound):
        return
    except Exception:
        logger.exception(
            "cancelling run %s after its client went away failed", run_id, extra=run_fields(run)
        )
    else:
        logger.info("run %s cancelled: its client went away", run_id, extra=run_fields(run))


async def cancel_after_disconnect(*, run_id: UUID) -> None:
    """`cancel_left_run` on an API thread."""
    await call_sync(cancel_left_run, run_id=run_id, on=Executor.API)


class AdmissionWatch:
    """A run's admission on an API thread, and its client, which may leave before admission
    answers (the view awaiting it is cancelled, while the admission goes on to its commit).
    Whichever of the two ends second cancels the admitted run, if the run asked to be cancelled
    when its client leaves (`Run.on_disconnect`): the admission's thread at once, or the event
    loop in the background. An admission that fails, or never started, admitted nothing."""

    __slots__ = ("_left", "_lock", "_run")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left = False
        self._run: Run | None = None

    def admitted(self, run: Run) -> Run:
        """On the admission's thread, after its commit: `run`, cancelled if its client left."""
        with self._lock:
            self._run = run
            left = self._left
        if left and run.on_disconnect == Run.OnDisconnect.CANCEL:
            cancel_left_run(run_id=run.pk)
        return run

    def client_left(self) -> None:
        """On the event loop, when the view awaiting the admission is cancelled."""
        with self._lock:
            self._left = True
            run = self._run
        if run is not None and run.on_disconnect == Run.OnDisconnect.CANCEL:
            spawn(cancel_after_disconnect(run_id=run.pk))


async def _delete_temporary_thread_later(*, run: Run) -> None:
    async def delete() -> None:
        try:
            await delete_temporary_thread(run)
        except Exception:
            logger.exception("run %s: deleting its temporary thread failed", run.pk)

    spawn(delete())


def spawn(coroutine: Any) -> None:
    """Run a coroutine to completion in the background (a cancel after a disconnect)."""
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
