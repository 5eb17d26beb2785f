"""What run services refuse, in the domain's words."""

from deerflow_site.errors import BadRequest, Conflict, Invalid, NotFound, QuotaExceeded


class RunNotFound(NotFound):
    """Run not found."""


class RunNotCancellable(Conflict):
    """The run has already finished on its own: there is nothing to cancel."""


class ResumeWithoutThread(BadRequest):
    """command.resume needs a thread with an interrupt to resume: send it to
    /threads/{thread_id}/runs..., not to a stateless run."""


class RunActive(Conflict):
    """The run is pending or running: cancel it first."""


class ThreadBusyReject(Conflict):
    """The thread has a pending or running run (multitask_strategy=reject)."""


class CheckpointOfOtherThread(BadRequest):
    """The checkpoint belongs to another thread."""


class WebhookRefused(Invalid):
    """The run's webhook URL is not one the server may post to."""

    def __init__(self, reason: str) -> None:
        super().__init__({"webhook": [reason]})


class UnknownGraph(Invalid):
    """No graph of that name is registered (an unknown assistant *id* is a 404 instead)."""

    def __init__(self, name: str) -> None:
        super().__init__({"assistant_id": [f"No graph named {name!r} is registered."]})


class TooManyActiveRuns(QuotaExceeded):
    """The user has as many pending or running runs as allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Limit reached: at most {limit} active (pending or running) runs per user "
            "(DEERFLOW_MAX_ACTIVE_RUNS_PER_USER). Wait for one to end, or cancel one."
        )


class OverLimit(Invalid):
    """A request value above the server's limit for it (a 422 naming the field and limit)."""

    def __init__(self, field: str, limit: float, setting: str) -> None:
        number = f"{limit:.0f}" if float(limit).is_integer() else str(limit)
        super().__init__({field: [f"Limit exceeded: at most {number} ({setting})."]})


class NeedsAnotherThread(Exception):
    """Admission on the engine's thread reached a step that awaits async code reading
    checkpoints (a fork's checkpoint, a webhook's check, a thread's values for refused writes),
    whose SQLite saver calls run on that very thread: nothing was written; admit on another
    thread (`runs.stream_views`). Not a client's error: never answered."""
