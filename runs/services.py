"""Writes to runs other than admission and cancel: deleting a finished run."""

from django.db import transaction

from runs import sql
from runs.exceptions import RunActive, RunNotFound
from runs.models import Run


def delete_run(*, run: Run) -> None:
    """Delete a finished run with its stored events (409 while it is pending or running)."""
    with transaction.atomic():
        # The thread's row first, then the run's, as every writer of both (a thread's deletion
        # deletes its runs' events, then its runs): the other order can deadlock.
        sql.lock_thread(run.thread_id)
        locked = Run.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None:
            raise RunNotFound()
        if locked.is_active:
            raise RunActive()
        locked.delete()
