"""The built-in agent's scripted model and tools, and JSON serialisation of graph output."""

import datetime
import json
import math
import os
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langgraph.types import Command, Interrupt, Send

from runs.engine.graphs.scripted_model import ScriptedChatModel
from runs.engine.graphs.tools import AGENT_TOOLS, calculator, word_count
from runs.engine.serialization import dumps, to_jsonable


@pytest.mark.parametrize(
    ("expression", "result"),
    [("(2 + 3) * 4", "20"), ("7 / 2", "3.5"), ("-2 ** 3", "-8"), ("10 // 3", "3")],
)
def test_calculator_evaluates_arithmetic(expression: str, result: str) -> None:
    assert calculator.invoke({"expression": expression}) == result


@pytest.mark.parametrize(
    "expression", ["__import__('os').system('true')", "2 ** 1000", "1 / 0", "x + 1", "2" * 300]
)
def test_calculator_refuses_anything_but_bounded_arithmetic(expression: str) -> None:
    assert calculator.invoke({"expression": expression}).startswith("error:")


@pytest.mark.parametrize(
    "expression",
    [
        "(((9**100)**100)**100)**10",
        "((((9**100)**100)**100)**100)**10",
        "9**99 * 9**99 * 9**99 * 9**99 * 9**99",
        "(2**99)**99",
        "(-8) ** 0.5",
        "1e308 * 10",
    ],
)
def test_calculator_refuses_results_too_large_before_computing_them(expression: str) -> None:
    assert calculator.invoke({"expression": expression}) in (
        "error: result too large",
        "error: result is not a real number",
    )


def test_word_count_counts_words() -> None:
    assert word_count.invoke({"text": "one two  three"}) == 3


def test_scripted_model_first_calls_a_tool_on_a_user_turn() -> None:
    model = ScriptedChatModel().bind_tools(AGENT_TOOLS)

    answer = model.invoke([HumanMessage("what is 6 * 7?")])

    assert answer.tool_calls[0]["name"] == "calculator"
    assert answer.tool_calls[0]["args"] == {"expression": "6 * 7"}


def test_scripted_model_answers_from_the_tool_result_token_by_token() -> None:
    model = ScriptedChatModel().bind_tools(AGENT_TOOLS)
    history = [
        HumanMessage("what is 6 * 7?"),
        model.invoke([HumanMessage("what is 6 * 7?")]),
        ToolMessage("42", name="calculator", tool_call_id="call_1"),
    ]

    chunks = list(model.stream(history))

    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert [c.content for c in chunks if c.content] == ["The ", "result ", "is ", "42."]
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] == 4


def test_scripted_model_is_deterministic() -> None:
    model = ScriptedChatModel().bind_tools(AGENT_TOOLS)
    prompt = [HumanMessage("count my words please")]

    assert model.invoke(prompt).tool_calls == model.invoke(prompt).tool_calls


@dataclass
class Point:
    x: int
    y: int


def test_messages_serialise_as_their_model_dump() -> None:
    data = to_jsonable(AIMessageChunk(content="hi", id="m1"))

    assert data["type"] == "AIMessageChunk"
    assert data["content"] == "hi" and data["id"] == "m1"
    assert "tool_call_chunks" in data


def test_langgraph_objects_serialise_like_the_langgraph_server() -> None:
    assert to_jsonable(Interrupt(value={"q": 1}, id="i1")) == {"value": {"q": 1}, "id": "i1"}
    assert to_jsonable(Send("node", {"a": 1})) == {"node": "node", "arg": {"a": 1}}
    assert to_jsonable(Command(resume="yes")) == {"resume": "yes"}


def test_plain_python_values_become_json() -> None:
    value = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "point": Point(1, 2),
        "items": (1, {2}),
        "raw": b"\x00\x01",
        "nan": math.nan,
        3: "int key",
    }

    data = to_jsonable(value)

    assert json.loads(json.dumps(data, allow_nan=False)) == {
        "when": "2024-01-02T03:04:05+00:00",
        "id": "12345678-1234-5678-1234-567812345678",
        "point": {"x": 1, "y": 2},
        "items": [1, [2]],
        "raw": "AAE=",
        "nan": None,
        "3": "int key",
    }


def test_unknown_objects_become_their_repr_and_never_raise() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    class Plain:
        def __repr__(self) -> str:
            return "<plain>"

    assert to_jsonable(Plain()) == "<plain>"
    assert to_jsonable(Broken()) == "<Broken>"


def test_to_jsonable_accepts_any_input(tmp_path: Any) -> None:
    assert to_jsonable(tmp_path) == str(tmp_path)


@pytest.mark.parametrize(
    "value",
    [
        (AIMessageChunk(content="hi ✓", id="m1"), {"langgraph_node": "model", "tags": ("a",)}),
        {"interrupt": Interrupt(value={"q": 1}, id="i1"), "command": Command(resume="yes")},
        {"when": datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC), "day": None},
        {"point": Point(1, 2), "items": (1, {2}), "raw": b"\x00", "nan": math.nan, 3: "key"},
        # What orjson refuses goes the standard library's way: a huge integer, a lone
        # surrogate, a key that is no scalar.
        {"big": 2**70},
        {(1, 2): "tuple key"},
    ],
)
def test_dumps_writes_what_to_jsonable_and_the_standard_library_would(value: Any) -> None:
    expected = json.dumps(to_jsonable(value), separators=(",", ":"), ensure_ascii=False)

    assert dumps(value) == expected


def test_dumps_never_raises_on_values_nested_past_the_recursion_limit() -> None:
    # orjson stops at 255 levels and the standard library at Python's recursion limit (about a
    # thousand): a graph's values nested deeper raised RecursionError, which breaks a stream's
    # frame or a /wait's answer. The depth is capped instead.
    deep: Any = "bottom"
    for _ in range(3000):
        deep = {"a": [deep, math.nan]}

    decoded = json.loads(dumps(deep))

    for _ in range(50):
        assert decoded["a"][1] is None
        decoded = decoded["a"][0]


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ({"surrogate": "a\ud800"}, {"surrogate": "a\ufffd"}),
        # bytes that are not UTF-8, decoded as Python decodes file names and command output
        ({"file": os.fsdecode(b"caf\xe9.txt"), "n": 2**70}, {"file": "caf\ufffd.txt", "n": 2**70}),
        ({"\udcff": ["ok", "\ud83d"]}, {"\ufffd": ["ok", "\ufffd"]}),
    ],
)
def test_dumps_writes_utf8_text_a_lone_surrogate_replaced(value: Any, decoded: Any) -> None:
    text = dumps(value)

    text.encode("utf-8")  # what an SSE frame and the database need
    assert json.loads(text) == decoded
