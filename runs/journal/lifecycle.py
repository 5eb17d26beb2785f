"""The lifecycle events of a run's journal: how it started and how it ended."""

from typing import Any

from runs.journal.catalog import EventType
from runs.journal.store import JournalEntry
from runs.models import Run


def run_started(run: Run) -> JournalEntry:
    """`run.start`: the graph, assistant and attempt."""
    return JournalEntry(
        EventType.RUN_START,
        metadata={
            "graph_id": run.graph_id,
            "assistant_id": str(run.assistant_id),
            "attempt": run.attempt,
        },
    )


def run_ended(
    *, status: str, error: dict[str, str] | None, cancel_action: str, rolled_back: bool
) -> JournalEntry:
    """The last event of an executed run: `run.error` (with the error), `run.cancel` (with
    the action and whether the thread was rolled back) or `run.end` (with the status)."""
    metadata: dict[str, Any] = {"status": status}
    if error is not None:
        return JournalEntry(EventType.RUN_ERROR, content=error, metadata=metadata)
    if cancel_action:
        metadata.update(action=cancel_action, rolled_back=rolled_back)
        return JournalEntry(EventType.RUN_CANCEL, metadata=metadata)
    return JournalEntry(EventType.RUN_END, metadata=metadata)


def pending_run_cancelled(*, action: str) -> JournalEntry:
    """`run.cancel` of a run cancelled before it started (written by whoever cancelled it)."""
    return JournalEntry(
        EventType.RUN_CANCEL,
        metadata={
            "status": Run.Status.INTERRUPTED.value,
            "action": action,
            "rolled_back": action == Run.CancelAction.ROLLBACK,
            "started": False,
        },
    )


def run_recovered(*, error: dict[str, str]) -> JournalEntry:
    """`run.error` of a run whose worker died, written by the worker or command that reaped it."""
    return JournalEntry(
        EventType.RUN_ERROR,
        content=error,
        metadata={"status": Run.Status.ERROR.value, "recovered": True},
    )
