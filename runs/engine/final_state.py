"""The thread's state at a run's end, from what the run streamed, when that is certain.

The end of a run mirrors its thread's latest state into the thread row (`finish.ThreadSnapshot`:
values, pending interrupts, whether it waits). `finish.snapshot_of` reads it back from the
checkpointer (`graph.aget_state`: a read on the saver's thread, the checkpoint deserialised,
LangGraph's next tasks prepared again). A run that went to its end knows that state already:
LangGraph's loop stopped because no task was left (so no `next`, no interrupt), and its last
`values` chunk at the root is `read_channels` of the channels the last checkpoint holds, the
channels `aget_state` reads (`astream`'s `values` are the graph's stream channels).

`FinalState` keeps that chunk and answers the snapshot only where nothing can differ from the
read; anything else returns None and the caller reads the state as before:
- the graph ran to its end: no exception, no cancel (the caller's part), no pause at the root
  (LangGraph's `on_interrupt` lifecycle callback: `interrupt()`, a breakpoint of the run, the
  graph or a subgraph), no `__interrupt__` in the chunk;
- `values` is among the run's stream modes and a root chunk was seen;
- the run named no checkpoint (a run from an older checkpoint may write none, and the thread's
  latest would be another one);
- every stream channel keeps its value across a step that does not write it (`LastValue`,
  `BinaryOperatorAggregate`; not ephemeral values, topics, delta or custom channels);
- the values survive the checkpoint's serialisation unchanged as JSON: dicts with string keys,
  lists, tuples, strings, numbers, booleans, None, and LangChain messages.
"""

import math
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.channels import BinaryOperatorAggregate, LastValue
from langgraph.pregel import Pregel

from runs.engine.finish import ThreadSnapshot

#: Channels whose value stays as it is through a step that does not write them.
STEADY_CHANNELS = (LastValue, BinaryOperatorAggregate)
#: Configurable keys that point a run at a checkpoint other than the thread's latest.
CHECKPOINT_KEYS = ("checkpoint_id", "checkpoint_map", "checkpoint_ns")
INTERRUPT_KEY = "__interrupt__"
#: Nesting deeper than this is not checked: the state is read instead.
MAX_DEPTH = 32

_NOT_SEEN: Any = object()


class FinalState:
    """The root `values` chunks of one run (`see`), and the thread's snapshot they give at its
    end (`snapshot`), or None where the checkpointer must be read."""

    __slots__ = ("_eligible", "values")

    def __init__(self, graph: Pregel, *, modes: list[str], config: dict[str, Any]) -> None:
        """`modes`: the LangGraph stream modes the run streams; `config`: its config."""
        self.values: Any = _NOT_SEEN
        configurable = config.get("configurable") or {}
        self._eligible = (
            "values" in modes
            and not any(configurable.get(key) for key in CHECKPOINT_KEYS)
            and steady_stream_channels(graph)
        )

    def see(self, chunk: Any) -> None:
        """A `values` chunk the root graph streamed."""
        self.values = chunk

    def snapshot(self, *, paused: bool) -> ThreadSnapshot | None:
        """The thread's snapshot after a run that went to its end (call it then only), or None
        when it must be read (`paused`: the root graph reported an interrupt)."""
        values = self.values
        if not self._eligible or paused or values is _NOT_SEEN:
            return None
        if isinstance(values, dict) and INTERRUPT_KEY in values:
            return None
        try:
            jsonable = plain_jsonable(values)
        except _NotPlain:
            return None
        return ThreadSnapshot(values=jsonable, interrupts={}, waiting=False)


def steady_stream_channels(graph: Pregel) -> bool:
    """Whether every channel `graph` streams as its values is a `STEADY_CHANNELS` one (exactly
    that type: a subclass may behave otherwise)."""
    channels = graph.channels
    for name in graph.stream_channels_list:
        if type(channels.get(name)) not in STEADY_CHANNELS:
            return False
    return True


class _NotPlain(Exception):
    """A value that the checkpoint's serialisation may not give back as the same JSON."""


def round_trips(value: Any) -> bool:
    """Whether `value` comes back from the checkpoint's serialisation as the same JSON: plain
    JSON values of UTF-8 text (tuples read back as lists), and LangChain messages whose fields
    are such values."""
    try:
        plain_jsonable(value)
    except _NotPlain:
        return False
    return True


def plain_jsonable(value: Any, depth: int = 0) -> Any:
    """`to_jsonable(value)` for a value that `round_trips` (made in the same walk); raises
    _NotPlain for any other."""
    kind = type(value)
    if kind is str:
        # A lone surrogate is no UTF-8: the checkpoint's serialisation replaces it.
        if value.isascii() or _is_utf8(value):
            return value
        raise _NotPlain
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None  # as to_jsonable
    if depth > MAX_DEPTH:
        raise _NotPlain
    if kind is dict:
        plain = {}
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _is_utf8(key)):
                raise _NotPlain
            plain[key] = plain_jsonable(item, depth + 1)
        return plain
    if kind is list or kind is tuple:
        return [plain_jsonable(item, depth + 1) for item in value]
    if isinstance(value, BaseMessage) and type(value).__module__.startswith(
        "langchain_core.messages"
    ):
        return plain_jsonable(dict(value.model_dump()), depth + 1)  # as to_jsonable
    raise _NotPlain


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
