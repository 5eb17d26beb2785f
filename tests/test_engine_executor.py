"""The executor end to end on the built-in graphs: events, statuses, thread state, cancels."""

import asyncio
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.engine.executor import CancelSignal, execute_run
from runs.engine.registry import graph_for_thread
from runs.models import Run, RunStreamEvent
from tests.engine_support import (
    RunListener,
    claimed_run,
    fetch_run,
    fetch_thread,
    make_thread,
)
from threads.models import Thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer"),
]


async def new_thread(user: Any) -> Thread:
    return await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)


async def run_to_end(
    thread: Thread,
    user: Any,
    graph_id: str = "echo",
    cancel: CancelSignal | None = None,
    **kwargs: Any,
) -> tuple[Run, list[Any]]:
    """Queue a run, claim it, execute it; return the stored run and the events it published."""
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id=graph_id,
        **kwargs,
    )
    async with RunListener(run.pk) as listener:
        await execute_run(run, cancel=cancel or CancelSignal())
        events = await listener.until_end()
    return await fetch_run(run.pk), events


def names(events: list[Any]) -> list[str]:
    return [event.event for event in events]


async def test_echo_run_streams_values_and_ends_with_success(user: Any) -> None:
    thread = await new_thread(user)

    run, events = await run_to_end(
        thread, user, input={"messages": [{"role": "user", "content": "hi"}]}
    )

    assert names(events) == ["values", "values", "end"]
    assert [e.id for e in events] == [1, 2, 3]
    assert events[-1].data is None
    assert [m["content"] for m in events[1].data["messages"]] == ["hi", "echo: hi"]
    assert events[1].data["messages"][1]["type"] == "ai"
    assert run.status == Run.Status.SUCCESS
    assert run.ended_at is not None and run.lease_expires_at is None


async def test_thread_mirrors_the_final_state_and_becomes_idle(user: Any) -> None:
    thread = await new_thread(user)

    await run_to_end(thread, user, input={"messages": [{"role": "user", "content": "hi"}]})

    thread = await fetch_thread(thread.pk)
    assert thread.status == Thread.Status.IDLE
    assert [m["content"] for m in thread.values["messages"]] == ["hi", "echo: hi"]
    assert thread.interrupts == {}
    assert thread.state_updated_at is not None


async def test_several_stream_modes_at_once(user: Any) -> None:
    thread = await new_thread(user)

    _, events = await run_to_end(
        thread, user, graph_id="slow", input={"steps": 2}, stream_mode=["updates", "custom"]
    )

    assert names(events) == ["updates", "custom", "updates", "custom", "updates", "end"]
    assert events[0].data == {"start": {"count": 0}}
    assert events[1].data == {"tick": 1}
    assert events[4].data == {"tick": {"count": 2, "ticks": [2]}}


async def test_messages_tuple_streams_agent_tokens_and_its_tool_call(user: Any) -> None:
    thread = await new_thread(user)

    run, events = await run_to_end(
        thread,
        user,
        graph_id="agent",
        input={"messages": [{"role": "user", "content": "what is (2 + 3) * 4?"}]},
        stream_mode=["messages-tuple"],
    )

    messages = [e.data for e in events if e.event == "messages"]
    assert all(isinstance(m, list) and len(m) == 2 for m in messages)
    chunks = [chunk for chunk, _ in messages]
    tool_calls = [c for c in chunks if c.get("tool_call_chunks")]
    assert tool_calls and tool_calls[0]["tool_call_chunks"][0]["name"] == "calculator"
    assert any(c["type"] == "tool" and c["content"] == "20" for c in chunks)
    answer = "".join(
        c["content"]
        for c, meta in messages
        if c["type"] == "AIMessageChunk" and meta["langgraph_step"] == 3
    )
    assert answer == "The result is 20."
    assert sum(1 for c, _ in messages if c["type"] == "AIMessageChunk" and c["content"]) >= 4
    assert messages[0][1]["langgraph_node"] == "model"
    assert run.status == Run.Status.SUCCESS


async def test_agent_run_records_token_usage(user: Any) -> None:
    thread = await new_thread(user)

    run, _ = await run_to_end(
        thread,
        user,
        graph_id="agent",
        input={"messages": [{"role": "user", "content": "count these four words"}]},
    )

    thread = await fetch_thread(thread.pk)
    assert thread.values["messages"][-1]["content"] == "Your message has 4 words."
    assert run.input_tokens > 0 and run.output_tokens > 0
    assert run.total_tokens == run.input_tokens + run.output_tokens


async def test_legacy_messages_mode_sends_metadata_then_partial_messages(user: Any) -> None:
    thread = await new_thread(user)

    _, events = await run_to_end(
        thread,
        user,
        graph_id="agent",
        input={"messages": [{"role": "user", "content": "what is 6*7"}]},
        stream_mode=["messages"],
    )

    partials = [e.data for e in events if e.event == "messages/partial"]
    assert "messages/metadata" in names(events)
    assert partials[-1][0]["content"] == "The result is 42."
    assert partials[-2][0]["content"] == "The result is "
    assert any(e.event == "messages/complete" for e in events)


async def test_subgraph_events_are_namespaced_with_stream_subgraphs(user: Any) -> None:
    thread = await new_thread(user)

    _, events = await run_to_end(
        thread, user, graph_id="nested", input={}, stream_mode=["updates"], subgraphs=True
    )

    inner = [e.event for e in events if e.event.startswith("updates|")]
    assert len(inner) == 2
    assert all(name.startswith("updates|child:") for name in inner)
    assert {next(iter(e.data)) for e in events if e.event in inner} == {"child_one", "child_two"}


async def test_subgraph_events_are_left_out_without_stream_subgraphs(user: Any) -> None:
    thread = await new_thread(user)

    _, events = await run_to_end(thread, user, graph_id="nested", input={}, stream_mode=["updates"])

    assert names(events) == ["updates", "updates", "updates", "end"]


async def test_interrupt_ends_run_success_with_thread_interrupted_and_interrupts(
    user: Any,
) -> None:
    thread = await new_thread(user)

    run, events = await run_to_end(
        thread, user, graph_id="ask_human", input={"question": "Proceed?"}, stream_mode=["updates"]
    )

    assert run.status == Run.Status.SUCCESS
    assert events[-2].data["__interrupt__"][0]["value"] == {"question": "Proceed?"}
    thread = await fetch_thread(thread.pk)
    assert thread.status == Thread.Status.INTERRUPTED
    [interrupts] = thread.interrupts.values()
    assert interrupts[0]["value"] == {"question": "Proceed?"} and interrupts[0]["id"]


async def test_resume_command_continues_an_interrupted_thread(user: Any) -> None:
    thread = await new_thread(user)
    await run_to_end(thread, user, graph_id="ask_human", input={"question": "Proceed?"})

    run, _ = await run_to_end(thread, user, graph_id="ask_human", command={"resume": "yes"})

    assert run.status == Run.Status.SUCCESS
    thread = await fetch_thread(thread.pk)
    assert thread.status == Thread.Status.IDLE
    assert thread.values["answer"] == "yes"
    assert thread.interrupts == {}


async def test_interrupt_before_stops_at_the_node_and_null_input_continues(user: Any) -> None:
    thread = await new_thread(user)
    first, _ = await run_to_end(
        thread,
        user,
        input={"messages": [{"role": "user", "content": "hi"}]},
        interrupt_before=["echo"],
    )
    assert first.status == Run.Status.SUCCESS
    assert (await fetch_thread(thread.pk)).status == Thread.Status.INTERRUPTED

    second, _ = await run_to_end(thread, user, input=None)

    assert second.status == Run.Status.SUCCESS
    values = (await fetch_thread(thread.pk)).values
    assert [m["content"] for m in values["messages"]] == ["hi", "echo: hi"]


async def test_failing_graph_ends_error_with_an_error_event(user: Any) -> None:
    thread = await new_thread(user)

    run, events = await run_to_end(thread, user, graph_id="failing", input={"message": "no luck"})

    assert names(events)[-2:] == ["error", "end"]
    assert events[-2].data == {"error": "GraphFailure", "message": "no luck"}
    assert run.status == Run.Status.ERROR
    assert run.error == {"error": "GraphFailure", "message": "no luck"}
    thread = await fetch_thread(thread.pk)
    assert thread.status == Thread.Status.ERROR


async def test_server_sets_configurable_keys_and_drops_dunder_keys(user: Any) -> None:
    thread = await new_thread(user)

    run, _ = await run_to_end(
        thread,
        user,
        input={"messages": [{"role": "user", "content": "hi"}]},
        config={"configurable": {"user_id": "mallory", "__pregel_secret": "x", "model": "m1"}},
    )

    graph = await graph_for_thread("echo")
    state = await graph.aget_state({"configurable": {"thread_id": thread.pk}})
    assert state.metadata["run_id"] == str(run.pk)
    assert state.metadata["user_id"] == str(user.pk)
    assert state.metadata["graph_id"] == "echo"
    assert state.metadata["assistant_id"] == str(run.assistant_id)
    assert state.metadata["model"] == "m1"
    assert "__pregel_secret" not in state.metadata


async def test_resumable_run_stores_every_event_it_publishes(user: Any) -> None:
    thread = await new_thread(user)

    run, events = await run_to_end(
        thread, user, graph_id="slow", input={"steps": 2}, resumable=True
    )

    stored = await call_sync(
        list,
        RunStreamEvent.objects.filter(run_id=run.pk).order_by("seq").values_list("seq", "event"),
        on=Executor.THREAD_SENSITIVE,
    )
    assert stored == [(e.id, e.event) for e in events]


async def test_events_mode_streams_langchain_events_beside_other_modes(user: Any) -> None:
    thread = await new_thread(user)

    _, events = await run_to_end(
        thread,
        user,
        input={"messages": [{"role": "user", "content": "hi"}]},
        stream_mode=["events", "values"],
    )

    kinds = {e.data["event"] for e in events if e.event == "events"}
    assert {"on_chain_start", "on_chain_end"} <= kinds
    assert names(events).count("values") == 2


async def slow_run_cancelled_after_ticks(
    thread: Thread, user: Any, action: str, ticks: int
) -> tuple[Run, list[Any]]:
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id="slow",
        input={"steps": 20, "delay": 0.1},
        stream_mode=["custom"],
    )
    cancel = CancelSignal()
    async with RunListener(run.pk) as listener:
        execution = asyncio.create_task(execute_run(run, cancel=cancel))
        while True:
            event = await listener.until("custom")
            if event.data["tick"] >= ticks:
                break
        cancel.set(action)
        await execution
        events = await listener.until_end()
    return await fetch_run(run.pk), events


async def test_cancel_interrupt_stops_the_run_and_keeps_its_checkpoints(user: Any) -> None:
    thread = await new_thread(user)

    run, events = await slow_run_cancelled_after_ticks(thread, user, "interrupt", ticks=3)

    assert run.status == Run.Status.INTERRUPTED and not run.rolled_back
    assert max(e.data["tick"] for e in events if e.event == "custom") < 20
    graph = await graph_for_thread("slow")
    state = await graph.aget_state({"configurable": {"thread_id": thread.pk}})
    assert state.values["count"] >= 2
    assert (await fetch_thread(thread.pk)).status == Thread.Status.INTERRUPTED


async def test_cancel_rollback_removes_the_runs_checkpoints(user: Any) -> None:
    thread = await new_thread(user)
    await run_to_end(thread, user, graph_id="slow", input={"steps": 1})

    run, _ = await slow_run_cancelled_after_ticks(thread, user, "rollback", ticks=3)

    assert run.status == Run.Status.INTERRUPTED and run.rolled_back
    graph = await graph_for_thread("slow")
    state = await graph.aget_state({"configurable": {"thread_id": thread.pk}})
    assert state.values["count"] == 1
    history = [
        s async for s in graph.aget_state_history({"configurable": {"thread_id": thread.pk}})
    ]
    assert all(s.metadata.get("run_id") != str(run.pk) for s in history)
    thread = await fetch_thread(thread.pk)
    assert thread.values["count"] == 1
    assert thread.status == Thread.Status.IDLE


async def test_run_reaped_meanwhile_is_left_to_the_reaper(user: Any) -> None:
    thread = await new_thread(user)
    run = await claimed_run(
        thread=thread,
        user=user,
        graph_id="slow",
        input={"steps": 20, "delay": 0.1},
        stream_mode=["custom"],
    )
    cancel = CancelSignal()
    async with RunListener(run.pk) as listener:
        execution = asyncio.create_task(execute_run(run, cancel=cancel))
        await listener.until("custom")  # mid-run: its first step is done
        await call_sync(
            Run.objects.filter(pk=run.pk).update,
            status=Run.Status.ERROR,
            on=Executor.THREAD_SENSITIVE,
        )
        cancel.set("lost")

        assert await execution is None
    assert (await fetch_run(run.pk)).status == Run.Status.ERROR


def test_unknown_cancel_action_is_ignored() -> None:
    signal = CancelSignal()

    signal.set("explode")

    assert not signal.is_set()
    signal.set("interrupt")
    signal.set("rollback")
    assert signal.action == "rollback"
