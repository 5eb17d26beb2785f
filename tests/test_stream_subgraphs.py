"""What a run streams from a subgraph, with and without `stream_subgraphs`, as the LangGraph
server streams it: the graph is streamed with `subgraphs` as the client asked, so without it a
chat model's message inside a subgraph reaches the root's `messages` once its subgraph node
ends (LangGraph's own `subgraphs=False` behaviour), and with it the model's message comes
namespaced (`messages|sub:<task>`) as the model answers."""

from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages

from runs.engine.executor import RunPlan, stream_graph


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]


def graph_with_a_model_in_a_subgraph() -> Any:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="hello there", id="m1")]))

    async def call(state: ChatState) -> ChatState:
        return {"messages": [await model.ainvoke(state["messages"])]}

    inner = StateGraph(ChatState)
    inner.add_node("call", call)
    inner.add_edge(START, "call")
    outer = StateGraph(ChatState)
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "sub")
    return outer.compile()


class Recorder:
    """An event publisher's `emit`, kept in a list."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def emit(self, name: str, payload: Any) -> None:
        self.events.append((name, payload))


async def streamed(*, subgraphs: bool) -> list[tuple[str, Any]]:
    plan = RunPlan(
        input={"messages": [("user", "hi")]},
        config={"configurable": {"thread_id": "t"}},
        stream_modes=["messages-tuple"],
        subgraphs=subgraphs,
    )
    recorder = Recorder()
    await stream_graph(graph_with_a_model_in_a_subgraph(), plan, recorder)  # type: ignore[arg-type]
    return recorder.events


def contents(events: list[tuple[str, Any]], name: str) -> list[str]:
    return [payload[0].content for event, payload in events if event == name]


async def test_a_subgraphs_message_reaches_the_root_when_its_node_ends() -> None:
    events = await streamed(subgraphs=False)

    assert [name for name, _ in events] == ["messages"]
    assert contents(events, "messages") == ["hello there"]


async def test_with_stream_subgraphs_the_models_message_comes_namespaced() -> None:
    events = await streamed(subgraphs=True)

    inner = [name for name, _ in events if name.startswith("messages|sub:")]
    assert inner
    assert "hello there" in "".join(payload[0].content for _, payload in events)
