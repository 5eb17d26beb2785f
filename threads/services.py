"""Writes to threads and the rules around them."""

import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from deerflow_site.dbcompat import hot_cursor
from deerflow_site.errors import Forbidden
from deerflow_site.rows import row_params
from runs.engine import delete_thread_checkpoints
from runs.models import Run
from threads.exceptions import ThreadBusy, ThreadExists, ThreadNotFound, ThreadStateUpdating
from threads.models import Thread
from threads.ownership import grant_owner, revoke_owner
from threads.selectors import get_thread

RESERVED_METADATA_KEYS = ("owner_id", "user_id")
#: A new thread's row; nothing when the id is taken (the caller then answers 409 or returns it).
INSERT_THREAD_SQL = """
    INSERT INTO {threads} ({columns}) VALUES ({values})
    ON CONFLICT ({thread_id}) DO NOTHING
"""


def clean_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Client metadata without the keys only the server may set."""
    return {k: v for k, v in (metadata or {}).items() if k not in RESERVED_METADATA_KEYS}


def locked_thread(thread: Thread) -> Thread:
    """The thread's row, locked until the transaction ends; ThreadNotFound (404) when it was
    deleted since the caller read it (a DELETE racing a PATCH, say)."""
    locked = Thread.objects.select_for_update(no_key=True).filter(pk=thread.pk).first()
    if locked is None:
        raise ThreadNotFound()
    return locked


def change_owner(*, thread: Thread, owner: Any) -> Thread:
    """Give the thread to `owner`: the owner's object permissions move from the previous owner
    (permissions shared with others stay); ThreadNotFound when it was deleted meanwhile."""
    with transaction.atomic():
        locked = locked_thread(thread)
        previous_id = locked.owner_id
        if previous_id == owner.pk:
            return locked
        revoke_owner(thread_id=locked.pk, user_id=previous_id)
        locked.owner = owner
        locked.save(update_fields=["owner", "updated_at"])
        grant_owner(thread_id=locked.pk, user_id=owner.pk)
    return locked


def create_thread(
    *,
    user: Any,
    thread_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    if_exists: str = "raise",
    ttl_minutes: float | None = None,
) -> tuple[Thread, bool]:
    """A new thread owned by `user` (True), or with `if_exists=do_nothing` the existing one
    if the user may view it (False); raises ThreadExists (409) when the id is taken otherwise.

    Two statements in one transaction (joining the caller's): the row, and the owner's object
    permissions. Racing creates of one id give one thread; the others see it taken.
    """
    now = timezone.now()
    thread = Thread(
        thread_id=thread_id or str(uuid.uuid4()),
        owner_id=user.pk,
        metadata=clean_metadata(metadata),
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(minutes=ttl_minutes) if ttl_minutes else None,
    )
    db = connections[DEFAULT_DB_ALIAS]
    row = row_params(thread, db)
    with transaction.atomic():
        with hot_cursor(db) as cursor:
            cursor.execute(_insert_thread_sql(), row)
            created = cursor.rowcount == 1
        if created:
            grant_owner(thread_id=thread.thread_id, user_id=user.pk, new_thread=True, db=db)
    if created:
        thread._state.adding = False
        thread._state.db = db.alias
        return thread, True
    if if_exists == "do_nothing":
        try:
            return get_thread(user=user, thread_id=thread.thread_id), False
        except ThreadNotFound:
            pass  # another user's thread: its id is taken all the same
    raise ThreadExists()


@cache
def _insert_thread_sql() -> str:
    quote = connection.ops.quote_name
    fields = Thread._meta.concrete_fields
    return INSERT_THREAD_SQL.format(
        threads=quote(Thread._meta.db_table),
        columns=", ".join(quote(field.column) for field in fields),
        values=", ".join("%s" for _ in fields),
        thread_id=quote(Thread._meta.pk.column),
    )


def update_thread(
    *, thread: Thread, metadata: dict[str, Any] | None, ttl_minutes: float | None = None
) -> Thread:
    """Merge `metadata` into the thread's metadata (and reset its time to live); ThreadNotFound
    (404) when the thread was deleted since it was read."""
    with transaction.atomic():
        thread = locked_thread(thread)
        thread.metadata = {**thread.metadata, **clean_metadata(metadata)}
        if ttl_minutes:
            thread.expires_at = timezone.now() + timedelta(minutes=ttl_minutes)
        thread.save(update_fields=["metadata", "expires_at", "updated_at"])
    return thread


def delete_thread(*, thread: Thread) -> None:
    """Delete a thread with its runs, events, feedback and checkpoints; 409 while busy (a run
    pending or running, or its state being updated)."""
    with transaction.atomic():
        locked = Thread.objects.select_for_update().filter(pk=thread.pk).first()
        if locked is None:
            return
        if Run.objects.active().filter(thread=locked).exists():
            raise ThreadBusy()
        if locked.state_update_under_way():
            raise ThreadStateUpdating()  # its checkpoint would outlive the thread
        lock_runs_of_threads([locked.pk])
        locked.delete()
        # In the same transaction: a thread is never gone while its checkpoints stay.
        delete_thread_checkpoints(thread.thread_id)


def prune_threads(*, user: Any, thread_ids: Iterable[str]) -> int:
    """Delete each of `thread_ids` as `DELETE /threads/{t}` would (`POST /threads/prune`): one
    missing, not the user's to delete, or busy (a run pending or running) is left as it is.
    Returns how many were deleted."""
    pruned = 0
    for thread_id in dict.fromkeys(thread_ids):
        try:
            thread = get_thread(user=user, thread_id=thread_id, action="delete", with_state=False)
            delete_thread(thread=thread)
        except (ThreadNotFound, Forbidden, ThreadBusy):
            continue
        pruned += 1
    return pruned


def delete_user(*, user: Any) -> None:
    """Delete a user with the threads they own, each as `delete_thread` deletes it (its runs,
    journal, feedback and checkpoints, which the database's cascade alone would leave behind),
    and their feedback; their runs on threads others own stay, without a user. ThreadBusy (409,
    naming the thread) while one of their threads has a run pending or running or its state
    being updated: then nothing is deleted."""
    with transaction.atomic():
        for thread in Thread.objects.filter(owner=user).order_by("pk"):
            try:
                delete_thread(thread=thread)
            except ThreadBusy as exc:
                raise type(exc)(f"Thread {thread.pk}: {exc.detail}") from None
        user.delete()


def lock_runs_of_threads(thread_ids: Sequence[str]) -> None:
    """Lock the runs of threads about to be deleted (FOR UPDATE, after their threads' rows, in
    the deletion's transaction), before their events are deleted: a worker's late write of a
    run that ended (a cancelled run's last stream or journal events) then waits for the
    deletion and fails, rather than committing between the deletion of the run's events and
    that of the run, which then broke the events' foreign key (IntegrityError, a 500)."""
    list(
        Run.objects.select_for_update()
        .filter(thread_id__in=list(thread_ids))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
