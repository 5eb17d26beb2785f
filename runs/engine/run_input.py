"""A run's input and `command.update` checked against its graph's state channels at admission.

LangGraph stores a run's first writes (a `Command`'s update as the thread checkpoint's pending
writes, the input as its `__start__` task's) before its reducers apply them: a value a reducer
refuses (`{"messages": 5}` for `add_messages`) then fails the run *and* stays on the thread's
latest checkpoint, so every later read of its state fails and, for an update, every later run.
Applying each written value to its channel first turns that into a 422 that changes nothing, as
`POST /threads/{t}/state` already answers for the same values.

The cheap check applies them to empty channels (exact for a new thread). Some refusals depend on
what the thread holds (removing a message by id), so a thread's run refused by it is checked
again on the thread's latest values before it is refused.
"""

from collections import defaultdict
from typing import Any

from langgraph._internal._typing import MISSING
from langgraph.pregel._io import map_command
from langgraph.types import Command

from runs.engine.registry import graph_for_thread, load_graph

#: A refusal: `{"input" | "command": [reason]}`, the detail of a 422.
Refusal = dict[str, list[str]]


def refused_run_writes(graph_id: str, kwargs: dict[str, Any]) -> Refusal | None:
    """Why the graph's empty state channels refuse a value of the run's input (a JSON object:
    its keys that are channels) or `command.update` (an object or `[key, value]` pairs), or
    None when they take them all."""
    return _refusal(load_graph(graph_id), kwargs, {})


async def arefused_on_thread(
    graph_id: str, thread_id: str, kwargs: dict[str, Any]
) -> Refusal | None:
    """`refused_run_writes` with the channels holding the thread's latest values."""
    graph = await graph_for_thread(graph_id)
    try:
        snapshot = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    except Exception:  # a state that cannot be read takes nothing more
        return refused_run_writes(graph_id, kwargs)
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    return _refusal(graph, kwargs, values)


def _refusal(graph: Any, kwargs: dict[str, Any], values: dict[str, Any]) -> Refusal | None:
    command = kwargs.get("command") or {}
    if command:
        if command.get("update") is None:
            return None
        try:
            pairs = [(c, v) for _, c, v in map_command(Command(update=command["update"]))]
        except Exception as exc:  # a shape LangGraph cannot read as updates
            return {"command": [f"update: {exc}"]}
        return _apply(graph, pairs, values, field="command")
    given = kwargs.get("input")
    if isinstance(given, dict):
        return _apply(graph, list(given.items()), values, field="input")
    return None


def _apply(
    graph: Any, pairs: list[tuple[str, Any]], values: dict[str, Any], *, field: str
) -> Refusal | None:
    by_channel: defaultdict[str, list[Any]] = defaultdict(list)
    for channel, value in pairs:
        if channel in graph.channels and not channel.startswith(("__", "branch:")):
            by_channel[channel].append(value)
    for channel, written in by_channel.items():
        try:
            graph.channels[channel].from_checkpoint(values.get(channel, MISSING)).update(written)
        except Exception as exc:  # whatever the reducer raises: LangGraph fails the run on it
            return {field: [f"{channel}: {exc}"]}
    return None
