"""The end of a run mirrors its thread's state from what the run streamed (`final_state`) when
the run went to its end, and reads it from the checkpointer otherwise: either way the thread row
holds what `aget_state` shows after the run (values, interrupts, status)."""

import asyncio
import datetime
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.dbcompat import jsonb_storable
from runs.engine import executor
from runs.engine.executor import CancelSignal, execute_run
from runs.engine.final_state import plain_jsonable, round_trips
from runs.engine.finish import snapshot_of, thread_status
from runs.engine.registry import graph_for_thread
from runs.engine.serialization import to_jsonable
from runs.models import Run
from tests.engine_support import (
    RunListener,
    claimed_run,
    fetch_run,
    fetch_thread,
    make_thread,
)
from tests.final_state_graphs import GRAPHS
from threads.models import Thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer", "test_graphs"),
]

PLAIN = {"input": {"text": "hi"}}

#: (graph id, the run's kwargs, whether its end takes the state from the stream)
CASES = [
    ("plain", PLAIN, True),
    ("narrow_output", PLAIN, True),
    ("chat", {"input": {"messages": [{"role": "user", "content": "q"}]}}, True),
    ("send_and_command", {"input": {"items": ["a", "b"]}}, True),
    ("nested", {"input": {"trail": ["in"]}, "subgraphs": True}, True),
    ("echo", {"input": {"messages": [{"role": "user", "content": "hi"}]}}, True),
    ("plain", {**PLAIN, "stream_mode": ["values", "updates", "custom"]}, True),
    ("plain", {**PLAIN, "stream_mode": ["events", "values"]}, True),
    ("ask_human", {"input": {"question": "q"}, "stream_mode": ["events", "values"]}, False),
    ("plain", {**PLAIN, "interrupt_before": ["second"]}, False),
    ("plain", {**PLAIN, "interrupt_after": ["second"]}, False),
    ("paused_before", PLAIN, False),
    ("paused_after", PLAIN, False),
    ("ask_human", {"input": {"question": "q"}}, False),
    ("subgraph_interrupt", {"input": {}}, False),
    ("subgraph_breakpoint", {"input": {}}, False),
    ("failing", {"input": {"message": "no"}}, False),
    ("ephemeral", {"input": {"text": "x"}}, False),
    ("objects", {"input": {}}, False),
    ("plain", {**PLAIN, "stream_mode": ["updates"]}, False),
    ("mutated", {"input": {}}, True),
    ("pydantic_state", {"input": {"text": "x"}}, True),
    ("overwrite", {"input": {"question": "q"}}, True),
    ("functional", {"input": {"a": 1}}, True),
    (
        "agent",  # the built-in agent: a tool call, its result, the answer (usage, metadata)
        {
            "input": {"messages": [{"role": "user", "content": "What is 6 * 7?"}]},
            "stream_mode": ["values", "messages-tuple"],
        },
        True,
    ),
    (
        "agent",
        {
            "input": {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "What time is it?"}]}
                ]
            }
        },
        True,
    ),
]


@pytest.fixture
def test_graphs(tmp_path: Path) -> Any:
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps({"graphs": GRAPHS}))
    with override_settings(LANGGRAPH_CONFIG=str(path)):
        yield


@pytest.fixture
def state_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread ids whose state a run's end read from the checkpointer."""
    reads: list[str] = []

    async def counted(graph: Any, thread_id: str) -> Any:
        reads.append(thread_id)
        return await snapshot_of(graph, thread_id)

    monkeypatch.setattr(executor, "snapshot_of", counted)
    return reads


async def execute(
    thread: Thread, user: Any, graph_id: str, cancel_after: str = "", **kwargs: Any
) -> Run:
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id=graph_id,
        **kwargs,
    )
    cancel = CancelSignal()
    async with RunListener(run.pk) as listener:
        execution = asyncio.create_task(execute_run(run, cancel=cancel))
        if cancel_after:
            await listener.until(cancel_after)
            cancel.set("interrupt")
        await execution
        await listener.until_end()
    return await fetch_run(run.pk)


async def assert_row_is_the_checkpointers_view(thread_id: str, graph_id: str, run: Run) -> None:
    graph = await graph_for_thread(graph_id)
    expected = await snapshot_of(graph, thread_id)
    row = await fetch_thread(thread_id)
    assert row.values == jsonb_storable(expected.values)
    assert row.interrupts == jsonb_storable(expected.interrupts)
    assert row.status == thread_status(
        has_active_runs=False, failed=run.status == Run.Status.ERROR, waiting=expected.waiting
    )


@pytest.mark.parametrize(("graph_id", "kwargs", "from_stream"), CASES)
async def test_the_thread_row_holds_the_checkpointers_view_after_each_kind_of_run(
    user: Any, state_reads: list[str], graph_id: str, kwargs: dict[str, Any], from_stream: bool
) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)

    run = await execute(thread, user, graph_id, **kwargs)

    assert state_reads == ([] if from_stream else [thread.pk])
    await assert_row_is_the_checkpointers_view(thread.pk, graph_id, run)


async def test_a_resumed_interrupt_that_ends_takes_its_state_from_the_stream(
    user: Any, state_reads: list[str]
) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    await execute(thread, user, "ask_human", input={"question": "q"})
    assert (await fetch_thread(thread.pk)).status == Thread.Status.INTERRUPTED

    run = await execute(thread, user, "ask_human", command={"resume": "yes"})

    assert state_reads == [thread.pk]  # the first run's pause only
    await assert_row_is_the_checkpointers_view(thread.pk, "ask_human", run)
    assert (await fetch_thread(thread.pk)).status == Thread.Status.IDLE


async def test_a_run_from_an_older_checkpoint_reads_the_threads_state(
    user: Any, state_reads: list[str]
) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    await execute(thread, user, "plain", **PLAIN)
    graph = await graph_for_thread("plain")
    first = (await graph.aget_state({"configurable": {"thread_id": thread.pk}})).config
    await execute(thread, user, "plain", input={"text": "again"})

    run = await execute(
        thread, user, "plain", input=None, checkpoint_id=first["configurable"]["checkpoint_id"]
    )

    assert state_reads == [thread.pk]
    await assert_row_is_the_checkpointers_view(thread.pk, "plain", run)


async def test_a_cancelled_run_reads_the_threads_state(user: Any, state_reads: list[str]) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)

    run = await execute(
        thread,
        user,
        "slow",
        cancel_after="custom",
        input={"steps": 20, "delay": 0.05},
        stream_mode=["values", "custom"],
    )

    assert run.status == Run.Status.INTERRUPTED
    assert state_reads == [thread.pk]
    await assert_row_is_the_checkpointers_view(thread.pk, "slow", run)


@pytest.mark.parametrize(
    "values",
    [
        {"files": ["caf\udce9.txt"]},  # what surrogateescape makes of bytes that are not UTF-8
        {"\ud83d": 1},
        [HumanMessage(content="half an emoji \ud83d")],
    ],
)
def test_a_lone_surrogate_does_not_round_trip(values: Any) -> None:
    """The checkpoint's serialisation replaces it: the state is read back instead."""
    assert not round_trips(values)
    assert round_trips({"files": ["café.txt", "plain"], "emoji": "😀"})


ACCEPTED = [
    {"text": "hi", "n": 1, "x": 2.5, "ok": True, "none": None, "nested": {"a": [1, (2, 3)]}},
    {"messages": [HumanMessage(content="q", id="1"), AIMessage(content="a", id="2")]},
    {
        "messages": [
            AIMessage(
                content=[{"type": "text", "text": "t"}],
                tool_calls=[{"name": "f", "args": {"q": [1, None]}, "id": "c"}],
                usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
                response_metadata={"model": "m"},
            ),
            ToolMessage(content="r", tool_call_id="c", artifact={"rows": [1, 2]}),
        ]
    },
    [1, "two", [3.0]],
    "a string",
]
REFUSED = [
    {"tags": {"a", "b"}},
    {1: "an int key"},
    {"when": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},
    {"messages": [ToolMessage(content="r", tool_call_id="c", artifact=object())]},
    {"deep": functools.reduce(lambda inner, _: [inner], range(50), [])},
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_values_taken_from_the_stream_read_back_the_same_from_a_checkpoint(value: Any) -> None:
    serde = JsonPlusSerializer()

    assert round_trips(value)
    assert to_jsonable(serde.loads_typed(serde.dumps_typed(value))) == to_jsonable(value)
    assert plain_jsonable(value) == to_jsonable(value)  # what the end stores


@pytest.mark.parametrize("value", REFUSED)
def test_values_that_may_read_back_otherwise_are_read_back(value: Any) -> None:
    assert not round_trips(value)


SEQUENCES = [
    [PLAIN, {"command": {"update": {"text": "updated"}}}],
    [PLAIN, {"command": {"update": {"text": "updated"}, "goto": "second"}}],
    [PLAIN, {"input": None}],
    [PLAIN, {"input": {"text": "again"}, "durability": "exit"}],
    [{"command": {"update": {"trail": ["given"]}, "goto": "quiet"}}],
]


@pytest.mark.parametrize("sequence", SEQUENCES)
async def test_runs_after_runs_hold_the_checkpointers_view(
    user: Any, sequence: list[dict[str, Any]]
) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    for kwargs in sequence:
        run = await execute(thread, user, "plain", **kwargs)
        await assert_row_is_the_checkpointers_view(thread.pk, "plain", run)
