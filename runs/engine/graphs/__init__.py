"""Built-in graphs: the `agent`, and small graphs that exercise every part of the engine.

This package's index names them without importing them (the registry imports a graph when it is
first used), and says which chat model the agent is set to use.
"""

from django.conf import settings

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: graph id -> "module:attr", in the LangGraph CLI's format. Always registered.
BUILTIN_GRAPHS: dict[str, str] = {
    "agent": "runs.engine.graphs.agent:make_agent",
}

#: The graphs the test suite runs, registered only when the SAMPLE_GRAPHS setting asks: in
#: production they would let any client hold a worker slot (`slow`) or fill logs (`failing`).
SAMPLE_GRAPHS: dict[str, str] = {
    "echo": "runs.engine.graphs.samples:echo",
    "ask_human": "runs.engine.graphs.samples:ask_human",
    "slow": "runs.engine.graphs.samples:slow",
    "failing": "runs.engine.graphs.samples:failing",
    "nested": "runs.engine.graphs.samples:nested",
}


def describe_agent_model() -> str:
    """Which chat model the agent uses, for /api/info and the start-up log."""
    if not settings.AGENT_MODEL:
        return "scripted (offline)"
    base_url = settings.AGENT_MODEL_BASE_URL or OPENAI_DEFAULT_BASE_URL
    return f"openai-compatible:{settings.AGENT_MODEL}@{base_url}"
