"""What the engine refuses, in the domain's words (mapped to responses in one place, with
every other domain error)."""

from deerflow_site.errors import BadRequest, Invalid, NotFound


class AssistantNotFound(NotFound):
    """Assistant not found."""


class CheckpointNotFound(NotFound):
    """Checkpoint not found."""


class GraphNotRegistered(BadRequest):
    """The thread's graph is not registered on this server."""


class UnknownBeforeCheckpoint(Invalid):
    """`before` names no checkpoint of this thread."""

    def __init__(self) -> None:
        super().__init__({"before": ["No checkpoint of this thread has that id."]})
