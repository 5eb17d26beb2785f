"""Built-in graphs: the `agent`, and small graphs that exercise every part of the engine."""

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
