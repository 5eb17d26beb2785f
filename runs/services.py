"""Writes to runs and the rules around them: admission, multitask strategies, cancel, delete.

Each write is one transaction with the thread row locked (PostgreSQL `SELECT … FOR UPDATE`;
SQLite's IMMEDIATE transactions serialise writers), so that the checks inside it hold when two
requests race on one thread from two processes. Bus messages go out only after the commit.
"""

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from deerflow_site.api.errors import Invalid
from deerflow_site.api.ids import parse_uuid
from runs.engine import bus
from runs.engine.registry import AssistantNotFound, GraphSpec, resolve_assistant
from runs.engine.streaming import out_of_band_events, publish_stream_events, store_stream_events
from runs.engine.thread_sync import settle_thread
from runs.exceptions import (
    CheckpointNotFound,
    CheckpointOfOtherThread,
    RunActive,
    RunNotCancellable,
    RunNotFound,
    ThreadBusyReject,
    UnknownGraph,
)
from runs.journal.lifecycle import pending_run_cancelled
from runs.journal.store import record_events
from runs.models import Run
from runs.serializers import RunRequest
from runs.webhooks import check_webhook_target
from threads.exceptions import ThreadExists, ThreadNotFound
from threads.models import Thread
from threads.selectors import get_thread
from threads.services import create_thread

logger = logging.getLogger(__name__)

Publish = Callable[..., Awaitable[None]]


def admit_run(*, user: Any, thread_id: str, body: RunRequest, run_id: UUID | None = None) -> Run:
    """Create a pending run on a thread, applying if_not_exists and the multitask strategy.

    404: the thread is not visible (or unknown with if_not_exists=reject), the assistant is
    unknown; 403: the user may not change the thread; 409: the thread is busy (reject).
    """
    with transaction.atomic():
        thread = _thread_for_run(user=user, thread_id=thread_id, if_not_exists=body.if_not_exists)
        spec = _assistant_for(body=body, thread=thread)
        in_flight = list(
            Run.objects.active().select_for_update().filter(thread=thread).order_by("created_at")
        )
        if in_flight:
            strategy = body.multitask_strategy
            if strategy == Run.MultitaskStrategy.REJECT:
                raise ThreadBusyReject()
            if strategy in (Run.MultitaskStrategy.INTERRUPT, Run.MultitaskStrategy.ROLLBACK):
                for other in in_flight:
                    _cancel_locked(run=other, action=strategy)
        now = timezone.now()
        run = Run.objects.create(
            run_id=run_id or uuid.uuid4(),
            thread=thread,
            user=user,
            assistant_id=spec.assistant_id,
            graph_id=spec.graph_id,
            status=Run.Status.PENDING,
            metadata=body.metadata,
            kwargs=body.kwargs,
            multitask_strategy=body.multitask_strategy,
            on_completion=body.on_completion,
            on_disconnect=body.on_disconnect,
            resumable=body.resumable,
            run_at=now + timedelta(seconds=body.after_seconds),
        )
        thread.metadata = {
            **thread.metadata,
            "graph_id": spec.graph_id,
            "assistant_id": str(spec.assistant_id),
        }
        thread.status = Thread.Status.BUSY
        thread.save(update_fields=["metadata", "status", "updated_at"])
        _after_commit(bus.wake_workers)
    return run


def _thread_for_run(*, user: Any, thread_id: str, if_not_exists: str) -> Thread:
    """The thread a run goes on, its row locked (one created here is ours until commit)."""
    try:
        return get_thread(user=user, thread_id=thread_id, action="change", for_update=True)
    except ThreadNotFound:
        if if_not_exists != "create":
            raise
    try:
        thread, _ = create_thread(user=user, thread_id=thread_id, if_exists="do_nothing")
    except ThreadExists:  # someone else's thread: never reveal that it exists
        raise ThreadNotFound() from None
    return thread


def _assistant_for(*, body: RunRequest, thread: Thread) -> GraphSpec:
    """The graph to run: the requested assistant, else the one the thread last ran."""
    requested = body.assistant_id or thread.metadata.get("assistant_id")
    if not requested:
        raise Invalid({"assistant_id": ["This field is required."]})
    try:
        return resolve_assistant(str(requested))
    except AssistantNotFound:
        if parse_uuid(requested) is not None:
            raise  # an unknown assistant id: 404
        raise UnknownGraph(str(requested)) from None


async def check_checkpoint(*, thread_id: str, body: RunRequest) -> None:
    """The checkpoint a run forks from must exist on its thread (404), not another's (400)."""
    checkpoint = body.checkpoint or {}
    if checkpoint.get("thread_id") not in (None, thread_id):
        raise CheckpointOfOtherThread()
    if not body.checkpoint_id:
        return
    from runs.engine.checkpointer import acheckpoint_on_other_thread, get_checkpointer

    saver = await get_checkpointer()
    config = {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint.get("checkpoint_ns") or "",
            "checkpoint_id": body.checkpoint_id,
        }
    }
    if await saver.aget_tuple(config) is None:
        if await acheckpoint_on_other_thread(body.checkpoint_id, thread_id):
            raise CheckpointOfOtherThread()
        raise CheckpointNotFound(f"Checkpoint {body.checkpoint_id!r} not found on this thread.")


async def check_webhook(*, body: RunRequest) -> None:
    """The run's webhook must point at an address the server may post to (422 otherwise)."""
    url = body.kwargs.get("webhook")
    if url:
        await check_webhook_target(url)


def cancel_run(*, run: Run, action: str) -> Run:
    """Stop a run: a pending one never starts; a running one is told to stop.

    Idempotent: a run already cancelled (`interrupted`) is returned as it is, as the deer-flow
    gateway answers a second Stop. RunNotCancellable (409) for a run that finished on its own
    (`success`, `error`, `timeout`); RunNotFound (404) when it is gone.
    """
    with transaction.atomic():
        Thread.objects.select_for_update().filter(pk=run.thread_id).first()
        locked = Run.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None:
            raise RunNotFound()
        if locked.status == Run.Status.INTERRUPTED:
            return locked
        if not locked.is_active:
            raise RunNotCancellable()
        _cancel_locked(run=locked, action=action)
        _release_thread(thread_id=locked.thread_id)
    return locked


def cancel_runs(
    *,
    user: Any,
    action: str,
    thread_id: str | None = None,
    run_ids: Iterable[UUID] | None = None,
    status: str | None = None,
) -> int:
    """Cancel many runs: those of one thread (all active, or `run_ids`), or all by status.

    Finished runs among them are skipped; returns how many were cancelled.
    """
    with transaction.atomic():
        runs = Run.objects.select_for_update()
        if thread_id is not None:
            thread = get_thread(user=user, thread_id=thread_id, action="change")
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
            runs = runs.filter(status__in=statuses, thread__in=_changeable_threads(user))
        cancelled = list(runs.order_by("created_at"))
        for run in cancelled:
            _cancel_locked(run=run, action=action)
        for changed_thread_id in {run.thread_id for run in cancelled}:
            _release_thread(thread_id=changed_thread_id)
    return len(cancelled)


def _changeable_threads(user: Any) -> Any:
    return get_objects_for_user(
        user, "threads.change_thread", klass=Thread, accept_global_perms=True
    ).values("pk")


def delete_run(*, run: Run) -> None:
    """Delete a finished run with its stored events (409 while it is pending or running)."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None:
            raise RunNotFound()
        if locked.is_active:
            raise RunActive()
        locked.delete()


def _cancel_locked(*, run: Run, action: str) -> None:
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
        _after_commit(publish_stream_events, run=run, events=events)
        return
    Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
        cancel_action=action, updated_at=now
    )
    run.cancel_action = action
    _after_commit(bus.publish_cancel, run_id=run.pk, worker_id=run.worker_id or "", action=action)


def _release_thread(*, thread_id: str) -> None:
    """Recompute the thread's status once a cancel may have left it with no active run.

    A cancelled pending run never changed the thread's state, so the status comes from what the
    last executed run left: its error, or its pending interrupts.
    """
    error = Thread.objects.filter(pk=thread_id).values_list("error", flat=True).first()
    settle_thread(thread_id=thread_id, failed=bool(error), error=error)


def _after_commit(publish: Publish, **kwargs: Any) -> None:
    """Send a bus message once the transaction commits; a lost message only costs latency."""

    def send() -> None:
        try:
            async_to_sync(publish)(**kwargs)
        except Exception:
            logger.warning("a bus message was not sent", exc_info=True)

    transaction.on_commit(send)
