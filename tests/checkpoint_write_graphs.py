"""Graphs for tests/test_deferred_writes.py, registered through a langgraph.json."""

import threading
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class HandleState(TypedDict, total=False):
    text: str
    handle: Any  # private: not in the output, so never streamed


class TextOnly(TypedDict, total=False):
    text: str


async def _hold(state: HandleState) -> dict[str, Any]:
    # A lock cannot be serialised: the checkpoint written after this step fails to be stored.
    return {"handle": threading.Lock(), "text": f"{state.get('text', '')} held"}


async def _drop(state: HandleState) -> dict[str, Any]:
    return {"handle": None, "text": f"{state.get('text', '')} dropped"}


unstorable = (
    StateGraph(HandleState, output_schema=TextOnly)
    .add_node("hold", _hold)
    .add_node("drop", _drop)
    .add_edge(START, "hold")
    .add_edge("hold", "drop")
    .add_edge("drop", END)
    .compile(name="unstorable")
)

GRAPHS = {"unstorable": "tests.checkpoint_write_graphs:unstorable"}
