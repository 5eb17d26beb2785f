"""A deterministic chat model, so that the built-in agent works without network or keys.

On a user turn it calls one tool (the calculator for arithmetic, the clock when asked the time,
otherwise the word counter); once the tool has answered, it answers from the result, streamed
token by token with usage metadata on the last chunk, like an OpenAI-compatible model does.
"""

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

ARITHMETIC = re.compile(r"[-+(]*\d[\d.\s]*(?:[-+*/%()]+[\d.\s()]*)+")
TOKEN = re.compile(r"\S+\s*|\s+")


def message_text(message: BaseMessage) -> str:
    """The text of a message, whether its content is a string or content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = [
        block if isinstance(block, str) else str(block.get("text", ""))
        for block in content
        if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")
    ]
    return " ".join(parts)


class ScriptedChatModel(BaseChatModel):
    """A chat model that follows a fixed, tool-calling script (offline and deterministic)."""

    model_name: str = "scripted"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | BaseTool | Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    # --- The script ---------------------------------------------------------------------

    def _chunks(
        self, messages: list[BaseMessage], tools: list[dict] | None
    ) -> list[AIMessageChunk]:
        tool_names = {t["function"]["name"] for t in tools or [] if "function" in t}
        last = messages[-1] if messages else None
        prompt_tokens = sum(len(message_text(m).split()) for m in messages)
        if isinstance(last, ToolMessage):
            text = self._answer_from_tool(last)
        elif last is not None and tool_names:
            call = self._tool_call(messages, message_text(last), tool_names)
            if call is not None:
                return [self._tool_call_chunk(call, prompt_tokens)]
            text = f"You said: {message_text(last)}"
        else:
            text = f"You said: {message_text(last)}" if last is not None else "Hello!"
        tokens = TOKEN.findall(text) or [""]
        chunks = [AIMessageChunk(content=token) for token in tokens]
        chunks[-1] = AIMessageChunk(
            content=tokens[-1],
            usage_metadata={
                "input_tokens": prompt_tokens,
                "output_tokens": len(tokens),
                "total_tokens": prompt_tokens + len(tokens),
            },
            response_metadata={"finish_reason": "stop", "model_name": self.model_name},
            chunk_position="last",
        )
        return chunks

    def _tool_call(
        self, messages: list[BaseMessage], text: str, tool_names: set[str]
    ) -> dict[str, Any] | None:
        digest = hashlib.sha1(f"{len(messages)}:{text}".encode()).hexdigest()[:16]
        call_id = f"call_{digest}"
        found = ARITHMETIC.search(text)
        expression = found.group().strip() if found else ""
        if "calculator" in tool_names and expression:
            return {"name": "calculator", "args": {"expression": expression}, "id": call_id}
        if "current_utc_time" in tool_names and re.search(r"\b(time|date|clock)\b", text, re.I):
            return {"name": "current_utc_time", "args": {}, "id": call_id}
        if "word_count" in tool_names:
            return {"name": "word_count", "args": {"text": text}, "id": call_id}
        return None

    def _tool_call_chunk(self, call: dict[str, Any], prompt_tokens: int) -> AIMessageChunk:
        return AIMessageChunk(
            content="",
            tool_call_chunks=[
                {
                    "name": call["name"],
                    "args": json.dumps(call["args"]),
                    "id": call["id"],
                    "index": 0,
                    "type": "tool_call_chunk",
                }
            ],
            usage_metadata={
                "input_tokens": prompt_tokens,
                "output_tokens": 1,
                "total_tokens": prompt_tokens + 1,
            },
            response_metadata={"finish_reason": "tool_calls", "model_name": self.model_name},
            chunk_position="last",
        )

    def _answer_from_tool(self, result: ToolMessage) -> str:
        value = message_text(result)
        if result.name == "calculator":
            return f"The result is {value}."
        if result.name == "current_utc_time":
            return f"The current UTC time is {value}."
        if result.name == "word_count":
            return f"Your message has {value} words."
        return f"The tool answered: {value}"

    # --- BaseChatModel ------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = self._chunks(messages, kwargs.get("tools"))
        message = chunks[0]
        for chunk in chunks[1:]:
            message = message + chunk
        return ChatResult(generations=[ChatGeneration(message=message_chunk_to_message(message))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages, kwargs.get("tools")):
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages, kwargs.get("tools")):
            yield ChatGenerationChunk(message=chunk)
