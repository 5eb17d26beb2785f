"""Writes to runs other than admission and cancel: deleting a finished run, and the locks a
thread's deletion takes on its runs."""

from collections.abc import Sequence

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
