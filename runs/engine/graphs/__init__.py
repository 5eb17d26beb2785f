"""Built-in graphs: the `agent`, and small graphs that exercise every part of the engine."""

#: graph id -> "module:attr", in the LangGraph CLI's format.
BUILTIN_GRAPHS: dict[str, str] = {
    "agent": "runs.engine.graphs.agent:make_agent",
    "echo": "runs.engine.graphs.samples:echo",
    "ask_human": "runs.engine.graphs.samples:ask_human",
    "slow": "runs.engine.graphs.samples:slow",
    "failing": "runs.engine.graphs.samples:failing",
    "nested": "runs.engine.graphs.samples:nested",
}
