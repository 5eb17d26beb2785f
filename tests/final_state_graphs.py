"""Graphs for tests/test_final_state.py: every way a run can end, each registered through a
langgraph.json (module paths), so that the engine runs them as any user graph."""

import dataclasses
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.channels import EphemeralValue
from langgraph.func import entrypoint
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.types import Command, Overwrite, Send, interrupt
from pydantic import BaseModel


class PlainState(TypedDict, total=False):
    text: str
    count: int
    trail: Annotated[list[str], operator.add]
    private: str


async def _first(state: PlainState) -> dict[str, Any]:
    return {"count": (state.get("count") or 0) + 1, "trail": ["first"], "private": "p"}


async def _second(state: PlainState) -> dict[str, Any]:
    return {"trail": ["second"], "text": f"{state.get('text', '')}!"}


async def _quiet(state: PlainState) -> dict[str, Any]:
    return {}  # the last step writes nothing


def _plain_builder(state: type = PlainState, **kwargs: Any) -> StateGraph:
    builder = StateGraph(state, **kwargs)
    builder.add_node("first", _first)
    builder.add_node("second", _second)
    builder.add_node("quiet", _quiet)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", "quiet")
    builder.add_edge("quiet", END)
    return builder


plain = _plain_builder().compile(name="plain")
#: Breakpoints compiled into the graph: it pauses before `second`, and after it.
paused_before = _plain_builder().compile(name="paused_before", interrupt_before=["second"])
paused_after = _plain_builder().compile(name="paused_after", interrupt_after=["second"])


class OutputOnly(TypedDict, total=False):
    text: str


#: An output schema narrower than the state (the thread's values are the whole state).
narrow_output = _plain_builder(PlainState, output_schema=OutputOnly).compile(name="narrow_output")


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]


async def _call_tool(state: ChatState) -> dict[str, Any]:
    call = {"name": "lookup", "args": {"query": "x", "n": [1, 2.5, None]}, "id": "call-1"}
    return {
        "messages": [
            AIMessage(content="", tool_calls=[call], response_metadata={"model": "m"}),
            ToolMessage(content="found", tool_call_id="call-1", name="lookup"),
        ]
    }


async def _answer(state: ChatState) -> dict[str, Any]:
    return {"messages": [AIMessage(content=[{"type": "text", "text": "the answer"}])]}


_chat_builder = StateGraph(ChatState)
_chat_builder.add_node("call_tool", _call_tool)
_chat_builder.add_node("answer", _answer)
_chat_builder.add_edge(START, "call_tool")
_chat_builder.add_edge("call_tool", "answer")
_chat_builder.add_edge("answer", END)
chat = _chat_builder.compile(name="chat")


class FanState(TypedDict, total=False):
    items: list[str]
    done: Annotated[list[str], operator.add]
    routed: str


def _fan_out(state: FanState) -> list[Send]:
    return [Send("work", {"items": [item]}) for item in state.get("items") or []]


async def _work(state: FanState) -> dict[str, Any]:
    return {"done": [f"did {item}" for item in state.get("items") or []]}


async def _route(state: FanState) -> Command:
    return Command(update={"routed": "yes"}, goto="finish")


async def _finish(state: FanState) -> dict[str, Any]:
    return {"done": ["finished"]}


_fan_builder = StateGraph(FanState)
_fan_builder.add_node("work", _work)
_fan_builder.add_node("route", _route)
_fan_builder.add_node("finish", _finish)
_fan_builder.add_conditional_edges(START, _fan_out, ["work"])
_fan_builder.add_edge("work", "route")
_fan_builder.add_edge("finish", END)
send_and_command = _fan_builder.compile(name="send_and_command")


class AskState(TypedDict, total=False):
    trail: Annotated[list[str], operator.add]
    answer: Any


async def _ask(state: AskState) -> dict[str, Any]:
    return {"answer": interrupt({"question": "yes?"}), "trail": ["asked"]}


_asking_child = (
    StateGraph(AskState).add_node("ask", _ask).add_edge(START, "ask").compile(name="asking_child")
)
#: A subgraph that calls interrupt(): the pause bubbles up to the root.
subgraph_interrupt = (
    StateGraph(AskState)
    .add_node("child", _asking_child)
    .add_edge(START, "child")
    .compile(name="subgraph_interrupt")
)
_breaking_child = (
    StateGraph(AskState)
    .add_node("one", lambda state: {"trail": ["one"]})
    .add_node("two", lambda state: {"trail": ["two"]})
    .add_edge(START, "one")
    .add_edge("one", "two")
    .compile(name="breaking_child", interrupt_before=["two"])
)
#: A subgraph compiled with a breakpoint: the root pauses with no interrupt value.
subgraph_breakpoint = (
    StateGraph(AskState)
    .add_node("child", _breaking_child)
    .add_edge(START, "child")
    .compile(name="subgraph_breakpoint")
)


class EphemeralState(TypedDict, total=False):
    text: str
    flash: Annotated[str, EphemeralValue(str)]


#: A stream channel cleared by the step after the one that wrote it.
ephemeral = (
    StateGraph(EphemeralState)
    .add_node("flash", lambda state: {"flash": "now"})
    .add_node("after", lambda state: {"text": "after"})
    .add_edge(START, "flash")
    .add_edge("flash", "after")
    .compile(name="ephemeral")
)


@dataclasses.dataclass
class Point:
    x: int
    y: int


class ObjectState(TypedDict, total=False):
    point: Any
    tags: Any


#: Values that are not plain JSON (a dataclass, a set).
objects = (
    StateGraph(ObjectState)
    .add_node("make", lambda state: {"point": Point(1, 2), "tags": {"b", "a"}})
    .add_edge(START, "make")
    .compile(name="objects")
)


class MutatedState(TypedDict, total=False):
    items: list[str]
    step: int


def _mutate(state: MutatedState) -> dict[str, Any]:
    state["items"].append("mutated")  # in place: `items` is not written by this step
    return {"step": 2}


#: A node that changes a value of its state in place instead of returning it: the checkpoint
#: keeps what the channel's last write stored.
mutated = (
    StateGraph(MutatedState)
    .add_node("write", lambda state: {"items": ["written"], "step": 1})
    .add_node("mutate", _mutate)
    .add_edge(START, "write")
    .add_edge("write", "mutate")
    .compile(name="mutated")
)


class PydanticState(BaseModel):
    text: str = ""
    trail: Annotated[list[str], operator.add] = []


#: A Pydantic state: its channels hold the fields' values.
pydantic_state = (
    StateGraph(PydanticState)
    .add_node("one", lambda state: {"text": state.text + "!", "trail": ["one"]})
    .add_node("two", lambda state: {"trail": ["two"]})
    .add_edge(START, "one")
    .add_edge("one", "two")
    .compile(name="pydantic_state")
)


class InputOnly(TypedDict, total=False):
    question: str


#: An input schema narrower than the state; the last step overwrites a reduced list.
overwrite = (
    StateGraph(PlainState, input_schema=InputOnly)
    .add_node("one", lambda state: {"trail": ["one", "two"], "text": "t"})
    .add_node("two", lambda state: {"trail": Overwrite(["only"])})
    .add_edge(START, "one")
    .add_edge("one", "two")
    .compile(name="overwrite")
)


@entrypoint(checkpointer=None)
async def functional(inputs: dict[str, Any], *, previous: Any = None) -> Any:
    return entrypoint.final(value={"got": inputs, "previous": previous}, save=len(str(inputs)))


GRAPHS = {
    name: f"tests.final_state_graphs:{name}"
    for name in (
        "plain",
        "paused_before",
        "paused_after",
        "narrow_output",
        "chat",
        "send_and_command",
        "subgraph_interrupt",
        "subgraph_breakpoint",
        "ephemeral",
        "objects",
        "mutated",
        "pydantic_state",
        "overwrite",
        "functional",
    )
}
