"""The realistic bench graph, served by every server: a tool-calling chat agent on a scripted model.

Shaped like the project's `agent` graph (model → tool → model, `MessagesState`), but standalone so
that the reference server and Aegra load it from their own venvs. Offline and deterministic: on a
human turn the model calls the `lookup` tool once; once the tool has answered, it streams an
answer of exactly ANSWER_TOKENS tokens (one chunk per token, usage on the last, as an
OpenAI-compatible model streams). The answer's words depend only on the question, so every
server produces the same events for the same input.
"""

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

#: Tokens in each streamed answer (each one a `messages` event on the wire).
ANSWER_TOKENS = 200
VOCABULARY = (
    "the agent looked up your question and found that the answer depends on a few facts "
    "which are listed here in order with a short note on each of them for you"
).split()


def _text(message: BaseMessage) -> str:
    content = message.content
    return content if isinstance(content, str) else json.dumps(content, sort_keys=True)


@tool
def lookup(query: str) -> str:
    """Look a query up in the (scripted) knowledge base."""
    digest = hashlib.sha1(query.encode()).hexdigest()[:12]
    return f"entry {digest} for {query!r}"


def answer_tokens(question: str) -> list[str]:
    """The ANSWER_TOKENS tokens of the answer to `question` (each a word and a space)."""
    start = int(hashlib.sha1(question.encode()).hexdigest()[:8], 16)
    return [f"{VOCABULARY[(start + n) % len(VOCABULARY)]} " for n in range(ANSWER_TOKENS)]


class ScriptedChatModel(BaseChatModel):
    """Calls `lookup` on a human turn; answers in ANSWER_TOKENS streamed tokens after the tool."""

    @property
    def _llm_type(self) -> str:
        return "bench-scripted"

    def _chunks(self, messages: list[BaseMessage]) -> list[AIMessageChunk]:
        last = messages[-1]
        prompt_tokens = sum(len(_text(m).split()) for m in messages)
        if not isinstance(last, ToolMessage):
            question = _text(last)
            call_id = (
                "call_" + hashlib.sha1(f"{len(messages)}:{question}".encode()).hexdigest()[:16]
            )
            call = {"name": "lookup", "args": json.dumps({"query": question}), "id": call_id}
            chunk = AIMessageChunk(
                content="",
                tool_call_chunks=[{**call, "index": 0, "type": "tool_call_chunk"}],
                usage_metadata={
                    "input_tokens": prompt_tokens,
                    "output_tokens": 1,
                    "total_tokens": prompt_tokens + 1,
                },
                response_metadata={"finish_reason": "tool_calls", "model_name": "bench-scripted"},
            )
            return [chunk]
        human = next((m for m in reversed(messages) if m.type == "human"), last)
        tokens = answer_tokens(_text(human))
        chunks = [AIMessageChunk(content=token) for token in tokens[:-1]]
        chunks.append(
            AIMessageChunk(
                content=tokens[-1],
                usage_metadata={
                    "input_tokens": prompt_tokens,
                    "output_tokens": len(tokens),
                    "total_tokens": prompt_tokens + len(tokens),
                },
                response_metadata={"finish_reason": "stop", "model_name": "bench-scripted"},
            )
        )
        return chunks

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = self._chunks(messages)
        message = chunks[0]
        for chunk in chunks[1:]:
            message = message + chunk
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            yield ChatGenerationChunk(message=chunk)


MODEL = ScriptedChatModel()


async def call_model(state: MessagesState, config: RunnableConfig) -> dict:
    return {"messages": [await MODEL.ainvoke(state["messages"], config)]}


builder = StateGraph(MessagesState)
builder.add_node("model", call_model)
builder.add_node("tools", ToolNode([lookup]))
builder.add_edge(START, "model")
builder.add_conditional_edges("model", tools_condition, ["tools", END])
builder.add_edge("tools", "model")
graph = builder.compile(name="chat")
