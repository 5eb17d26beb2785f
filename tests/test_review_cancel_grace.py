"""A cancelled run ends within CANCEL_GRACE_SECONDS of its cancel even when its graph does not
unwind: a node blocked in sync code (on LangGraph's thread) or one that swallows every
cancellation keeps running on its own, but the run's end is not held by it."""

import asyncio
import threading
from typing import Any, TypedDict

import pytest
from langgraph.graph import START, StateGraph

from runs.engine import executor
from runs.engine.executor import CancelSignal, _run_unless_cancelled


class State(TypedDict, total=False):
    done: bool


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "CANCEL_GRACE_SECONDS", 0.05)


@pytest.mark.usefixtures("short_grace")
async def test_a_node_blocked_in_sync_code_does_not_hold_the_runs_end() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()
    release = threading.Event()

    def blocked(state: State) -> dict[str, Any]:
        loop.call_soon_threadsafe(entered.set)
        release.wait(60)
        return {"done": True}

    graph = StateGraph(State).add_node("blocked", blocked).add_edge(START, "blocked").compile()

    async def work() -> None:
        async for _ in graph.astream({}):
            pass

    cancel = CancelSignal()
    running = asyncio.create_task(_run_unless_cancelled(work(), cancel))
    try:
        await entered.wait()
        cancel.set("interrupt")
        done, _ = await asyncio.wait({running}, timeout=30)
        assert running in done, "the run's end waited for the blocked node"
        assert running.result() == "interrupt"
    finally:
        release.set()
        await asyncio.wait({running})


@pytest.mark.usefixtures("short_grace")
async def test_a_graph_that_swallows_every_cancellation_does_not_hold_the_runs_end() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    cancel = CancelSignal()
    running = asyncio.create_task(_run_unless_cancelled(stubborn(), cancel))
    try:
        await started.wait()
        cancel.set("interrupt")
        done, _ = await asyncio.wait({running}, timeout=10)
        assert running in done, "the run's end waited for the graph that ignores its cancel"
        assert running.result() == "interrupt"
    finally:
        release.set()
        await asyncio.wait({running})
