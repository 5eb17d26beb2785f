"""Helpers for the engine's tests: pending runs, bus listeners, a fresh channel layer."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from channels.layers import channel_layers
from django.utils import timezone
from langgraph.checkpoint.base import empty_checkpoint

from deerflow_site.bridge import Executor, SerialThread, call_sync
from runs.engine import Subscription, bus, fanout, queue
from runs.engine.checkpointer import close_checkpointer
from runs.engine.registry import resolve_assistant
from runs.models import Run
from tests.waiting import PATIENCE, read_until
from threads.models import Thread
from threads.services import create_thread


@pytest.fixture
def fresh_channel_layer() -> Any:
    """A new in-memory channel layer for the test (queues are bound to one event loop)."""
    channel_layers.backends.clear()
    yield bus.layer()
    channel_layers.backends.clear()


@pytest.fixture
async def closing_checkpointer() -> AsyncIterator[None]:
    """Close the test loop's checkpoint saver at the end of the test."""
    yield
    await close_checkpointer()


def make_thread(*, user: Any, thread_id: str | None = None) -> Thread:
    thread, _ = create_thread(user=user, thread_id=thread_id)
    return thread


def claim_next(*, worker_id: str) -> Run | None:
    """One claim of one run, as a worker with one free slot makes it."""
    runs = queue.claim_runs(worker_id=worker_id, limit=1).runs
    return runs[0] if runs else None


def pending_run(
    *,
    thread: Thread,
    user: Any,
    graph_id: str = "echo",
    run_at: datetime | None = None,
    resumable: bool = False,
    on_completion: str = "keep",
    **kwargs: Any,
) -> Run:
    """A pending run, as the admission service would store it (thread marked busy)."""
    spec = resolve_assistant(graph_id)
    kwargs.setdefault("stream_mode", ["values"])
    run = Run.objects.create(
        thread=thread,
        user=user,
        assistant_id=spec.assistant_id,
        graph_id=spec.graph_id,
        status=Run.Status.PENDING,
        run_at=run_at or timezone.now(),
        kwargs=kwargs,
        resumable=resumable,
        on_completion=on_completion,
    )
    Thread.objects.filter(pk=thread.pk).update(status=Thread.Status.BUSY)
    return run


async def claimed_run(*, thread: Thread, user: Any, **kwargs: Any) -> Run:
    """A `pending_run` (with its arguments) claimed at once by worker `test-worker`: a running
    run for `execute_run`."""
    run = await call_sync(
        pending_run, thread=thread, user=user, **kwargs, on=Executor.THREAD_SENSITIVE
    )
    claimed = await call_sync(claim_next, worker_id="test-worker", on=Executor.THREAD_SENSITIVE)
    assert claimed is not None and claimed.pk == run.pk
    return claimed


@dataclass
class Received:
    id: int
    event: str
    data: Any


class RunListener:
    """Subscribes to a run's stream group and collects its events."""

    def __init__(self, run_id: Any, wait_seconds: float = PATIENCE) -> None:
        self.run_id = run_id
        self.wait_seconds = wait_seconds
        self.subscription: Subscription | None = None
        self.events: list[Received] = []

    async def __aenter__(self) -> RunListener:
        self.subscription = await Subscription.open(bus.run_stream_group(self.run_id))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.subscription is not None
        await self.subscription.close()
        await fanout.stop_listening()

    async def until_end(self) -> list[Received]:
        """Every event up to and including `end`."""
        async with asyncio.timeout(self.wait_seconds):
            while not self.events or self.events[-1].event != "end":
                await self.next()
        return self.events

    async def next(self) -> Received:
        assert self.subscription is not None
        message = await self.subscription.receive(within=self.wait_seconds)
        if message is None:
            raise TimeoutError(f"no event of run {self.run_id} in {self.wait_seconds} s")
        received = Received(message["id"], message["event"], json.loads(message["data"]))
        self.events.append(received)
        return received

    async def until(self, event: str) -> Received:
        async with asyncio.timeout(self.wait_seconds):
            while True:
                received = await self.next()
                if received.event == event:
                    return received


async def fetch_run(run_id: Any) -> Run:
    return await call_sync(Run.objects.get, pk=run_id, on=Executor.THREAD_SENSITIVE)


async def fetch_thread(thread_id: str) -> Thread:
    return await call_sync(Thread.objects.get, pk=thread_id, on=Executor.THREAD_SENSITIVE)


async def wait_for_status(run_id: Any, *statuses: str, within: float = PATIENCE) -> Run:
    """The run once its status is one of `statuses`; AssertionError after `within` seconds.

    Polled: the status is a row the worker writes (in this process or another), and no one
    announcement covers every status (the run's `end` and `run_ended` come after some ends
    only; listening to the run's events would change what its publisher does under test)."""
    return await read_until(
        lambda: fetch_run(run_id),
        f"run {run_id} to be {' or '.join(statuses)}",
        accept=lambda run: run.status in statuses,
        within=within,
    )


class Blocked:
    """Holds a saver's thread busy until released, so that the calls made meanwhile queue."""

    def __init__(self, thread: SerialThread) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        thread.submit(self._block)

    def _block(self) -> None:
        self.started.set()
        self.release.wait(timeout=30)

    def __enter__(self) -> Blocked:
        assert self.started.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


async def queued(coroutine: Any) -> asyncio.Task[Any]:
    """The coroutine as a task that has made its call (the saver's thread is blocked)."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)  # one loop turn: the task runs up to its first await, the call
    return task


# --- Checkpoint savers (tests/test_engine_*_saver.py) -------------------------------------------


def root_config(thread_id: str) -> dict[str, Any]:
    """The config of a thread's root namespace: what `aput` and `aget_tuple` take."""
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


async def put_checkpoint(saver: Any, thread_id: str, run_id: str = "run-1") -> dict[str, Any]:
    """An empty checkpoint of `run_id` put on the thread's root namespace; its config."""
    return await saver.aput(
        root_config(thread_id), empty_checkpoint(), {"run_id": run_id, "step": 1}, {}
    )


async def assert_a_cancelled_write_commits(saver: Any) -> None:
    """A write whose caller is cancelled while the saver's thread is busy still commits: the
    caller sees CancelledError, the checkpoint is stored all the same."""
    thread_id = f"t-{uuid.uuid4()}"
    with Blocked(saver.thread):
        write = await queued(put_checkpoint(saver, thread_id))
        write.cancel()

    with pytest.raises(asyncio.CancelledError):
        await write
    assert await saver.aget_tuple(root_config(thread_id)) is not None
