"""The catalog of journal event types, named as deer-flow's run event store names them."""

from django.db import models

from deerflow_site.errors import Invalid


class EventCategory(models.TextChoices):
    """What an event is for: chat history, the run's life, or a trace of model calls."""

    MESSAGE = "message"
    LIFECYCLE = "lifecycle"
    TRACE = "trace"


class EventType(models.TextChoices):
    """Every event a run writes to its journal."""

    HUMAN_INPUT = "llm.human.input"
    AI_RESPONSE = "llm.ai.response"
    TOOL_RESULT = "llm.tool.result"
    RUN_START = "run.start"
    RUN_END = "run.end"
    RUN_ERROR = "run.error"
    RUN_CANCEL = "run.cancel"
    LLM_CALL = "llm.call"
    LLM_ERROR = "llm.error"

    @property
    def category(self) -> EventCategory:
        return CATEGORY_OF[self]


CATEGORY_OF: dict[str, EventCategory] = {
    EventType.HUMAN_INPUT: EventCategory.MESSAGE,
    EventType.AI_RESPONSE: EventCategory.MESSAGE,
    EventType.TOOL_RESULT: EventCategory.MESSAGE,
    EventType.RUN_START: EventCategory.LIFECYCLE,
    EventType.RUN_END: EventCategory.LIFECYCLE,
    EventType.RUN_ERROR: EventCategory.LIFECYCLE,
    EventType.RUN_CANCEL: EventCategory.LIFECYCLE,
    EventType.LLM_CALL: EventCategory.TRACE,
    EventType.LLM_ERROR: EventCategory.TRACE,
}

#: deer-flow's older names, still accepted in `event_types` filters.
LEGACY_ALIASES: dict[str, EventType] = {
    "human_message": EventType.HUMAN_INPUT,
    "ai_message": EventType.AI_RESPONSE,
    "tool_message": EventType.TOOL_RESULT,
}


def parse_event_types(value: str | None, *, field: str = "event_types") -> list[str]:
    """`a,b` (catalog names or legacy aliases) as catalog names; empty: no filter.

    Raises Invalid (422 naming `field`) for a name the catalog does not know.
    """
    names: list[str] = []
    for raw in (value or "").split(","):
        name = raw.strip()
        if not name:
            continue
        resolved = LEGACY_ALIASES.get(name, name)
        if resolved not in CATEGORY_OF:
            raise Invalid({field: [f"Unknown event type {name!r}."]})
        if resolved not in names:
            names.append(str(resolved))
    return names
