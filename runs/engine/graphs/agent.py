"""The built-in `agent`: a tool-calling agent on a configurable OpenAI-compatible chat model.

With no model configured (settings.AGENT_MODEL empty) it runs on the scripted model, so that the
default install works offline.
"""

from django.conf import settings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from runs.engine.graphs.scripted_model import ScriptedChatModel
from runs.engine.graphs.tools import AGENT_TOOLS

SYSTEM_PROMPT = (
    "You are a helpful assistant. Use the calculator for arithmetic, word_count to count words "
    "and current_utc_time for the date or time."
)


def chat_model() -> BaseChatModel:
    if not settings.AGENT_MODEL:
        return ScriptedChatModel()
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.AGENT_MODEL,
        base_url=settings.AGENT_MODEL_BASE_URL or None,
        # Local OpenAI-compatible servers take any key; the client refuses an empty one.
        api_key=settings.AGENT_MODEL_API_KEY or "unused",
        streaming=True,
        stream_usage=True,
    )


def make_agent() -> CompiledStateGraph:
    """The agent graph: the model, then tools while it asks for them, then the model again."""
    model = chat_model().bind_tools(AGENT_TOOLS)

    async def call_model(state: MessagesState, config: RunnableConfig) -> dict:
        prompt = [{"role": "system", "content": SYSTEM_PROMPT}, *state["messages"]]
        return {"messages": [await model.ainvoke(prompt, config)]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(AGENT_TOOLS))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(name="agent")
