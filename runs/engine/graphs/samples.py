"""Small built-in graphs that exercise the engine: values, interrupts, slow steps with custom
events, failures and subgraphs. The test suite and the benchmarks run them."""

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.types import interrupt

from runs.engine.graphs.scripted_model import message_text

MAX_SLOW_DELAY = 60.0


def _chain(state: type, *nodes: tuple[str, Any]) -> StateGraph:
    """A graph that runs `nodes` one after the other, from START to END."""
    builder = StateGraph(state)
    previous = START
    for name, node in nodes:
        builder.add_node(name, node)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder


class EchoState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    value: Any


async def _echo(state: EchoState) -> dict[str, Any]:
    messages = state.get("messages") or []
    said = message_text(messages[-1]) if messages else ""
    return {"messages": [AIMessage(content=f"echo: {said}")]}


echo = _chain(EchoState, ("echo", _echo)).compile(name="echo")


class AskState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    answer: Any


async def _ask(state: AskState) -> dict[str, Any]:
    answer = interrupt({"question": state.get("question") or "What should I do?"})
    return {"answer": answer, "messages": [AIMessage(content=f"You answered: {answer}")]}


async def _finish(state: AskState) -> dict[str, Any]:
    return {"messages": [AIMessage(content="done")]}


ask_human = _chain(AskState, ("ask", _ask), ("finish", _finish)).compile(name="ask_human")


class SlowState(TypedDict, total=False):
    """`steps` ticks per run, `delay` seconds each; `ticks` keeps every run's ticks."""

    steps: int
    delay: float
    count: int
    ticks: Annotated[list[int], operator.add]


async def _start_ticking(state: SlowState) -> dict[str, Any]:
    return {"count": 0}


async def _tick(state: SlowState) -> dict[str, Any]:
    """One step: a custom event, then a pause of `delay` seconds (bounded)."""
    count = (state.get("count") or 0) + 1
    get_stream_writer()({"tick": count})
    await asyncio.sleep(min(max(float(state.get("delay") or 0.0), 0.0), MAX_SLOW_DELAY))
    return {"count": count, "ticks": [count]}


def _more_ticks(state: SlowState) -> str:
    return "tick" if (state.get("count") or 0) < int(state.get("steps") or 1) else END


def _build_slow() -> Any:
    builder = StateGraph(SlowState)
    builder.add_node("start", _start_ticking)
    builder.add_node("tick", _tick)
    builder.add_edge(START, "start")
    builder.add_edge("start", "tick")
    builder.add_conditional_edges("tick", _more_ticks, ["tick", END])
    return builder.compile(name="slow")


slow = _build_slow()


class FailingState(TypedDict, total=False):
    message: str


class GraphFailure(ValueError):
    """What the `failing` graph raises."""


async def _fail(state: FailingState) -> dict[str, Any]:
    raise GraphFailure(state.get("message") or "this graph always fails")


failing = _chain(FailingState, ("fail", _fail)).compile(name="failing")


class TrailState(TypedDict, total=False):
    trail: Annotated[list[str], operator.add]


def _step(name: str) -> Any:
    async def step(state: TrailState) -> dict[str, Any]:
        return {"trail": [name]}

    return step


def _steps(*names: str) -> list[tuple[str, Any]]:
    return [(name, _step(name)) for name in names]


_child = _chain(TrailState, *_steps("child_one", "child_two")).compile(name="child")
nested = _chain(TrailState, *_steps("before"), ("child", _child), *_steps("after")).compile(
    name="nested"
)
