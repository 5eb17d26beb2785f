"""Thread state writes and what the thread row mirrors of them: update a thread's state, copy a
thread; which fields of a `ThreadState` a client selects.

The state itself is the engine's (`runs.engine`: read, history, update through the graph, copy
of checkpoints); this module keeps the thread row in step with it.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from deerflow_site.bridge import Executor, call_sync
from runs.engine import (
    ThreadSnapshot,
    adelete_thread_checkpoints,
    copy_state,
    thread_status,
    update_state,
)
from runs.models import Run
from threads.exceptions import ThreadBusy, ThreadHasNoGraph, ThreadStateUpdating
from threads.models import Thread
from threads.ownership import grant_owner
from threads.services import locked_thread

STATE_FIELDS = (
    "values",
    "next",
    "tasks",
    "checkpoint",
    "metadata",
    "created_at",
    "parent_checkpoint",
    "interrupts",
)


def select_state_fields(state: dict[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
    """Only the `select`ed fields of a ThreadState; `values.<key>` keeps one key of `values`."""
    if not select:
        return state
    selected: dict[str, Any] = {}
    value_keys = [field.split(".", 1)[1] for field in select if field.startswith("values.")]
    for field in select:
        if field in state:
            selected[field] = state[field]
    if value_keys and "values" not in selected and isinstance(state.get("values"), dict):
        selected["values"] = {k: state["values"][k] for k in value_keys if k in state["values"]}
    return selected


def _lease_for_update(thread: Thread) -> datetime:
    """Hold the thread for a state update: its row locked, no run pending or running (else
    ThreadBusy, 409) and no other update under way (ThreadStateUpdating, 409), it is marked
    `state_updating_until` (now + the run lease), which admission and deletion respect, so that
    no run starts from the state the update is replacing, nor writes over it."""
    with transaction.atomic():
        locked = locked_thread(thread)
        now = timezone.now()
        if locked.state_update_under_way(now):
            raise ThreadStateUpdating()
        if Run.objects.active().filter(thread_id=thread.pk).exists():
            raise ThreadBusy()
        until = now + timedelta(seconds=settings.RUN_LEASE_SECONDS)
        Thread.objects.filter(pk=thread.pk).update(state_updating_until=until)
    return until


def _end_lease(thread: Thread, until: datetime, fields: dict[str, Any] | None) -> None:
    """Release the update's hold `until` on the thread (not a later update's), storing its state
    snapshot `fields` (None: the update failed) unless a run was admitted meanwhile (a lease
    outlived)."""
    with transaction.atomic():
        Thread.objects.filter(pk=thread.pk, state_updating_until=until).update(
            state_updating_until=None
        )
        if fields is not None:
            _save_state_fields(thread, fields)


def _thread_fields(snapshot: ThreadSnapshot, *, failed: bool = False) -> dict[str, Any]:
    """Thread.values / interrupts / status for a thread without active runs (engine rules)."""
    status = thread_status(has_active_runs=False, failed=failed, waiting=snapshot.waiting)
    return {"values": snapshot.values, "interrupts": snapshot.interrupts, "status": status}


def _save_state_fields(thread: Thread, fields: dict[str, Any]) -> None:
    """Store the state snapshot on the thread unless a run was admitted meanwhile."""
    active = Run.objects.active().filter(thread=OuterRef("pk"))
    now = timezone.now()
    Thread.objects.filter(pk=thread.pk).exclude(Exists(active)).update(
        **fields, error=None, state_updated_at=now, updated_at=now
    )


async def update_thread_state(
    *,
    thread: Thread,
    values: dict[str, Any] | list[Any] | None,
    as_node: str | None = None,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_id: str | None = None,
    user: Any = None,
) -> dict[str, Any]:
    """Write `values` into the thread's state as if `as_node` had run; returns {checkpoint}.

    409 while a run is pending or running or another update is under way (no run is
    admitted, nor the thread deleted, until this one ends); 400 if the thread has no graph yet.
    """
    until = await call_sync(_lease_for_update, thread, on=Executor.THREAD_SENSITIVE)
    fields = None
    try:
        updated = await update_state(
            thread=thread,
            values=values,
            as_node=as_node,
            checkpoint=checkpoint,
            checkpoint_id=checkpoint_id,
            user=user,
        )
        if updated is None:
            raise ThreadHasNoGraph()
        written, latest = updated
        fields = _thread_fields(latest)
    finally:
        await call_sync(_end_lease, thread, until, fields, on=Executor.THREAD_SENSITIVE)
    return {"checkpoint": written}


def _create_copy(*, source: Thread, user: Any) -> Thread:
    with transaction.atomic():
        copy = Thread.objects.create(
            thread_id=str(uuid.uuid4()),
            owner=user,
            metadata=dict(source.metadata or {}),
            config=source.config,
            values=source.values,
            interrupts=source.interrupts,
            error=source.error,
            status=source.status,
            state_updated_at=source.state_updated_at,
        )
        grant_owner(thread_id=copy.thread_id, user_id=user.pk, new_thread=True)
    return copy


def _save_copy_fields(copy: Thread, fields: dict[str, Any]) -> Thread:
    for name, value in fields.items():
        setattr(copy, name, value)
    copy.save(update_fields=[*fields, "updated_at"])
    return copy


async def copy_thread(*, thread: Thread, user: Any) -> Thread:
    """A new thread owned by `user` with the thread's metadata, state and checkpoints."""
    copy = await call_sync(_create_copy, source=thread, user=user, on=Executor.THREAD_SENSITIVE)
    try:
        snapshot = await copy_state(source=thread, target_thread_id=copy.thread_id)
        fields: dict[str, Any] = {}
        if snapshot is not None:  # the copy's summary is that of the checkpoints it got
            failed = thread.status == Thread.Status.ERROR
            fields = _thread_fields(snapshot, failed=failed)
        elif copy.status == Thread.Status.BUSY:
            fields = {"status": Thread.Status.IDLE}
        if fields:
            copy = await call_sync(_save_copy_fields, copy, fields, on=Executor.THREAD_SENSITIVE)
    except BaseException:
        await adelete_thread_checkpoints(copy.thread_id)
        await call_sync(copy.delete, on=Executor.THREAD_SENSITIVE)
        raise
    return copy
