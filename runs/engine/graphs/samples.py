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


class EchoState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    value: Any


async def _echo(state: EchoState) -> dict[str, Any]:
    messages = state.get("messages") or []
    said = message_text(messages[-1]) if messages else ""
    return {"messages": [AIMessage(content=f"echo: {said}")]}


def _build_echo() -> Any:
    builder = StateGraph(EchoState)
    builder.add_node("echo", _echo)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile(name="echo")


echo = _build_echo()


class AskState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    answer: Any


async def _ask(state: AskState) -> dict[str, Any]:
    answer = interrupt({"question": state.get("question") or "What should I do?"})
    return {"answer": answer, "messages": [AIMessage(content=f"You answered: {answer}")]}


async def _finish(state: AskState) -> dict[str, Any]:
    return {"messages": [AIMessage(content="done")]}


def _build_ask_human() -> Any:
    builder = StateGraph(AskState)
    builder.add_node("ask", _ask)
    builder.add_node("finish", _finish)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "finish")
    builder.add_edge("finish", END)
    return builder.compile(name="ask_human")


ask_human = _build_ask_human()


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


def _build_failing() -> Any:
    builder = StateGraph(FailingState)
    builder.add_node("fail", _fail)
    builder.add_edge(START, "fail")
    builder.add_edge("fail", END)
    return builder.compile(name="failing")


failing = _build_failing()


class TrailState(TypedDict, total=False):
    trail: Annotated[list[str], operator.add]


def _step(name: str) -> Any:
    async def step(state: TrailState) -> dict[str, Any]:
        return {"trail": [name]}

    return step


def _build_nested() -> Any:
    child = StateGraph(TrailState)
    child.add_node("child_one", _step("child_one"))
    child.add_node("child_two", _step("child_two"))
    child.add_edge(START, "child_one")
    child.add_edge("child_one", "child_two")
    child.add_edge("child_two", END)

    parent = StateGraph(TrailState)
    parent.add_node("before", _step("before"))
    parent.add_node("child", child.compile(name="child"))
    parent.add_node("after", _step("after"))
    parent.add_edge(START, "before")
    parent.add_edge("before", "child")
    parent.add_edge("child", "after")
    parent.add_edge("after", END)
    return parent.compile(name="nested")


nested = _build_nested()
