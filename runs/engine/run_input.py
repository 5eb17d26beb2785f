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

An input that is not a JSON object (a string, a number, a list, a boolean) fails the first step
of a StateGraph of named fields ("Expected dict"), so it is refused the same way. A StateGraph
of one unnamed value (`StateGraph(Annotated[list, operator.add])`) applies the whole input to
that value; other graphs (the functional API's, a plain Pregel) take any input. A null input
continues from the thread's checkpoint.
"""

from collections import defaultdict
from typing import Any

from langgraph._internal._typing import MISSING
from langgraph.graph import StateGraph
from langgraph.pregel._io import map_command
from langgraph.types import Command

from runs.engine.registry import graph_for_thread, load_graph

#: A refusal: `{"input" | "command": [reason]}`, the detail of a 422.
Refusal = dict[str, list[str]]

#: The channel of a StateGraph whose state is one unnamed value.
_ROOT = "__root__"

#: JSON's names of the Python types a JSON value decodes to.
_JSON_TYPES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "an array",
}


def refused_run_writes(graph_id: str, kwargs: dict[str, Any]) -> Refusal | None:
    """Why the graph's empty state channels refuse a value of the run's input (a JSON object:
    its keys that are channels; any JSON value for a state of one unnamed value) or
    `command.update` (an object or `[key, value]` pairs), or why its graph cannot take the
    input at all (not an object, for a StateGraph of named fields), or None when they take
    them all."""
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
    if snapshot.created_at is None:  # no checkpoint yet: empty channels
        values = {}
    elif _of_one_value(graph):
        values = {_ROOT: snapshot.values}
    else:
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
    if given is None:
        return None
    if _of_one_value(graph):
        return _apply(graph, [(_ROOT, given)], values, field="input")
    if isinstance(given, dict):
        return _apply(graph, list(given.items()), values, field="input")
    if isinstance(getattr(graph, "builder", None), StateGraph):
        kind = _JSON_TYPES.get(type(given), type(given).__name__)
        return {"input": [f"This graph takes an object of its state's fields, not {kind}."]}
    return None


def _of_one_value(graph: Any) -> bool:
    """Whether `graph` is a StateGraph whose input is one unnamed value (its root channel)."""
    builder = getattr(graph, "builder", None)
    return isinstance(builder, StateGraph) and _ROOT in builder.schemas.get(
        builder.input_schema, {}
    )


def _apply(
    graph: Any, pairs: list[tuple[str, Any]], values: dict[str, Any], *, field: str
) -> Refusal | None:
    by_channel: defaultdict[str, list[Any]] = defaultdict(list)
    for channel, value in pairs:
        if channel in graph.channels and (
            channel == _ROOT or not channel.startswith(("__", "branch:"))
        ):
            by_channel[channel].append(value)
    for channel, written in by_channel.items():
        try:
            graph.channels[channel].from_checkpoint(values.get(channel, MISSING)).update(written)
        except Exception as exc:  # whatever the reducer raises: LangGraph fails the run on it
            return {field: [f"{channel}: {exc}"]}
    return None
