"""A run's input and `command.update` checked against its graph's state channels at admission.

LangGraph stores a run's first writes (a `Command`'s update as the thread checkpoint's pending
writes, the input as its `__start__` task's) before its reducers apply them: a value a reducer
refuses (`{"messages": 5}` for `add_messages`) then fails the run *and* stays on the thread's
latest checkpoint, so every later read of its state fails and, for an update, every later run.
Applying each written value to a fresh copy of its channel first turns that into a 422 that
changes nothing, as `POST /threads/{t}/state` already answers for the same values.
"""

from collections import defaultdict
from typing import Any

from langgraph._internal._typing import MISSING
from langgraph.pregel._io import map_command
from langgraph.types import Command

from deerflow_site.errors import Invalid
from runs.engine.registry import load_graph


def check_run_writes(graph_id: str, kwargs: dict[str, Any]) -> None:
    """Raise Invalid (422, naming `input` or `command`) when the graph's state channels refuse a
    value of the run's input (a JSON object: its keys that are channels) or of its
    `command.update` (an object or a list of `[key, value]` pairs)."""
    graph = load_graph(graph_id)
    command = kwargs.get("command") or {}
    if command:
        if command.get("update") is not None:
            try:
                pairs = [(c, v) for _, c, v in map_command(Command(update=command["update"]))]
            except Exception as exc:  # a shape LangGraph cannot read as updates
                raise Invalid({"command": [f"update: {exc}"]}) from None
            _apply(graph, pairs, field="command")
        return
    given = kwargs.get("input")
    if isinstance(given, dict):
        _apply(graph, list(given.items()), field="input")


def _apply(graph: Any, pairs: list[tuple[str, Any]], *, field: str) -> None:
    by_channel: defaultdict[str, list[Any]] = defaultdict(list)
    for channel, value in pairs:
        if channel in graph.channels and not channel.startswith(("__", "branch:")):
            by_channel[channel].append(value)
    for channel, values in by_channel.items():
        try:
            graph.channels[channel].from_checkpoint(MISSING).update(values)
        except Exception as exc:  # whatever the reducer raises: LangGraph fails the run on it
            raise Invalid({field: [f"{channel}: {exc}"]}) from None
