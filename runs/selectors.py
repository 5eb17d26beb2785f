"""Reads of runs: a run follows its thread's permissions (view to read, change to act on it)."""

from typing import Any
from uuid import UUID

from django.db.models import QuerySet

import runs.sql as sql
from deerflow_site.api.ids import validate_thread_id, validate_uuid
from runs.engine import final_answer_of
from runs.exceptions import RunNotFound
from runs.models import Run, RunStreamEvent
from threads.selectors import get_thread


def runs_of_thread(
    *, user: Any, thread_id: str, status: str | None = None, action: str = "view"
) -> QuerySet[Run]:
    """The thread's runs, newest first (404 if the thread is not visible, 403 without `action`)."""
    thread = get_thread(user=user, thread_id=validate_thread_id(thread_id), action=action)
    runs = Run.objects.filter(thread=thread).select_related("thread")
    if status:
        runs = runs.filter(status=status)
    return runs.order_by("-created_at", "-run_id")


def get_run(*, user: Any, thread_id: str, run_id: str | UUID, action: str = "view") -> Run:
    """One run of a thread the user may see (404 if it is not of that thread)."""
    run_uuid = validate_uuid(run_id, field="run_id")
    run = runs_of_thread(user=user, thread_id=thread_id, action=action).filter(pk=run_uuid).first()
    if run is None:
        raise RunNotFound()
    return run


def run_by_id(*, run_id: UUID | str) -> Run | None:
    """A run without permission checks (for code that already checked them)."""
    return Run.objects.select_related("thread").filter(pk=run_id).first()


def stored_events_after(
    *, run_id: UUID | str, after: int, limit: int = 500
) -> list[RunStreamEvent]:
    """Stored stream events of a resumable run with an id above `after`, in order."""
    return list(RunStreamEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:limit])


def first_stored_event_id(*, run_id: UUID | str) -> int | None:
    """The lowest stored event id of a run (None when nothing is stored)."""
    return (
        RunStreamEvent.objects.filter(run_id=run_id)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )


#: The answer of a run deleted (with its thread) before its answer was read: an error, not
#: an empty state that a client would take for the run's success.
RUN_GONE = {
    "__error__": {
        "error": "RunNotFound",
        "message": "The run and its thread were deleted before its answer was read.",
    }
}


def final_answer(*, run_id: UUID | str) -> Any:
    """What `/wait` and `/join` return: the thread's values after the run, or its error
    (RUN_GONE when the run is gone). One query for the run and its thread.

    `__interrupt__` lists the pending interrupts when the run stopped at `interrupt()`.
    """
    row = sql.final_answer_row(run_id)
    if row is None:
        return RUN_GONE
    status, error, values, interrupts = row
    return final_answer_of(status=status, error=error, values=values, interrupts=interrupts)


def run_status(*, run_id: UUID | str) -> str | None:
    """A run's status (None when the run is gone), without permission checks."""
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
