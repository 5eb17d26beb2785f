"""What the engine refuses, in the domain's words (mapped to responses in one place, with
every other domain error)."""

from deerflow_site.errors import BadRequest, Conflict, Invalid, NotFound


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


class DamagedCheckpoint(Conflict):
    """A checkpoint of the thread cannot be loaded (damaged, or written by an older version)."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"A checkpoint of this thread cannot be loaded: {problem}. The thread's history "
            "still lists the states that load; a state update or a copy needs its latest "
            "checkpoint to load, so neither repairs it."
        )
