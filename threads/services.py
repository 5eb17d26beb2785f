"""Writes to threads and the rules around them."""

import uuid
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from runs.engine import delete_thread_checkpoints
from runs.models import Run
from threads.exceptions import ThreadBusy, ThreadExists
from threads.models import Thread
from threads.selectors import visible_threads

OWNER_PERMISSIONS = ("view_thread", "change_thread", "delete_thread")
RESERVED_METADATA_KEYS = ("owner_id", "user_id")


def clean_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Client metadata without the keys only the server may set."""
    return {k: v for k, v in (metadata or {}).items() if k not in RESERVED_METADATA_KEYS}


def grant_owner(*, thread: Thread, user: Any) -> None:
    for permission in OWNER_PERMISSIONS:
        assign_perm(permission, user, thread)


def change_owner(*, thread: Thread, owner: Any) -> Thread:
    """Give the thread to `owner`: the owner's object permissions move from the previous owner
    (permissions shared with others stay)."""
    with transaction.atomic():
        locked = Thread.objects.select_for_update().get(pk=thread.pk)
        previous = locked.owner
        if previous.pk == owner.pk:
            return locked
        for permission in OWNER_PERMISSIONS:
            remove_perm(permission, previous, locked)
        locked.owner = owner
        locked.save(update_fields=["owner", "updated_at"])
        grant_owner(thread=locked, user=owner)
    return locked


def create_thread(
    *,
    user: Any,
    thread_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    if_exists: str = "raise",
    ttl_minutes: float | None = None,
) -> tuple[Thread, bool]:
    """A new thread owned by `user`, or the existing visible one with `if_exists=do_nothing`."""
    thread_id = thread_id or str(uuid.uuid4())
    expires_at = timezone.now() + timedelta(minutes=ttl_minutes) if ttl_minutes else None
    try:
        with transaction.atomic():
            thread = Thread.objects.create(
                thread_id=thread_id,
                owner=user,
                metadata=clean_metadata(metadata),
                expires_at=expires_at,
            )
            grant_owner(thread=thread, user=user)
            return thread, True
    except IntegrityError:
        if not Thread.objects.filter(pk=thread_id).exists():
            raise  # another constraint failed (the owner's row is gone): not a taken id
        existing = visible_threads(user=user).filter(pk=thread_id).first()
        if if_exists == "do_nothing" and existing is not None:
            return existing, False
        raise ThreadExists() from None


def update_thread(
    *, thread: Thread, metadata: dict[str, Any] | None, ttl_minutes: float | None = None
) -> Thread:
    """Merge `metadata` into the thread's metadata (and reset its time to live)."""
    with transaction.atomic():
        thread = Thread.objects.select_for_update().get(pk=thread.pk)
        thread.metadata = {**thread.metadata, **clean_metadata(metadata)}
        if ttl_minutes:
            thread.expires_at = timezone.now() + timedelta(minutes=ttl_minutes)
        thread.save(update_fields=["metadata", "expires_at", "updated_at"])
    return thread


def delete_thread(*, thread: Thread) -> None:
    """Delete a thread with its runs, events, feedback and checkpoints; 409 while busy."""
    with transaction.atomic():
        locked = Thread.objects.select_for_update().filter(pk=thread.pk).first()
        if locked is None:
            return
        if Run.objects.active().filter(thread=locked).exists():
            raise ThreadBusy()
        locked.delete()
        # In the same transaction: a thread is never gone while its checkpoints stay.
        delete_thread_checkpoints(thread.thread_id)
