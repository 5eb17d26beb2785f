"""What thread services refuse, in the domain's words."""

from deerflow_site.errors import BadRequest, Conflict, NotFound


class ThreadNotFound(NotFound):
    """Thread not found."""


class ThreadExists(Conflict):
    """Thread already exists."""


class ThreadBusy(Conflict):
    """The thread has a pending or running run."""


class ThreadStateUpdating(ThreadBusy):
    """The thread's state is being updated (POST /threads/{thread_id}/state): try again."""


class ThreadHasNoGraph(BadRequest):
    """The thread has no graph yet: run one first."""
