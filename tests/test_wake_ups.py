"""Admission's wake-up of the workers is sent by the event loop, not awaited by admission's
thread (`bus.wake_workers_soon`): it still reaches a worker that only hears the layer, and the
wake-ups asked while one is being sent make one more send after it, not one each."""

import asyncio
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus
from runs.engine.direct import serve_direct_starts
from runs.models import Run
from tests.engine_support import (  # noqa: F401
    closing_checkpointer,
    fresh_channel_layer,
    wait_for_status,
)
from tests.test_direct_start import ECHO, admit, direct_worker, new_thread  # noqa: F401
from tests.test_worker_queue_looks import found_the_queue_empty

pytestmark = pytest.mark.django_db(transaction=True)


async def sends_done() -> None:
    """Until this loop's wake-up sends have ended."""
    wake_ups = bus._wake_ups.get(asyncio.get_running_loop())
    while wake_ups is not None and wake_ups.task is not None:
        await asyncio.shield(wake_ups.task)


@override_settings(RUN_POLL_SECONDS=3600.0)
async def test_a_queued_run_starts_by_the_wake_up_the_loop_sends(
    user: Any,
    direct_worker: Any,  # noqa: F811
) -> None:
    worker = await direct_worker(concurrency=2)
    serve_direct_starts(None)  # a worker of another process: it hears the layer only
    await found_the_queue_empty(worker)

    run = await admit(user, await new_thread(user), ECHO)

    assert run.status == Run.Status.PENDING
    await wait_for_status(run.pk, Run.Status.SUCCESS, within=30.0)


# Counted on the in-memory layer's queues; the sends are the same on any layer.
in_memory_layer = pytest.mark.skipif(
    not settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer"),
    reason="counts the in-memory layer's queued messages",
)


@in_memory_layer
async def test_wake_ups_asked_before_a_send_starts_ride_on_it(
    fresh_channel_layer: Any,  # noqa: F811
) -> None:
    layer = fresh_channel_layer
    channel = await layer.new_channel()
    await layer.group_add(bus.WAKEUP_GROUP, channel)

    def ask(times: int) -> None:
        for _ in range(times):
            bus.wake_workers_soon()

    await call_sync(ask, 3, on=Executor.API)
    await sends_done()
    assert layer.channels[channel].qsize() == 1

    await call_sync(ask, 1, on=Executor.API)
    await sends_done()
    assert layer.channels[channel].qsize() == 2
    assert (await layer.receive(channel))["type"] == bus.WAKEUP


@in_memory_layer
async def test_a_wake_up_asked_during_a_send_makes_one_more_send(
    fresh_channel_layer: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker woken by the send in flight may have read the queue before the newer run was
    # committed: the newer run's wake-up is sent after it.
    layer = fresh_channel_layer
    channel = await layer.new_channel()
    await layer.group_add(bus.WAKEUP_GROUP, channel)
    in_flight, go_on = asyncio.Event(), asyncio.Event()
    send = layer.group_send

    async def held_send(group: str, message: dict[str, Any]) -> None:
        in_flight.set()
        await go_on.wait()
        await send(group, message)

    monkeypatch.setattr(layer, "group_send", held_send)
    await call_sync(bus.wake_workers_soon, on=Executor.API)
    await in_flight.wait()
    await call_sync(lambda: [bus.wake_workers_soon() for _ in range(2)], on=Executor.API)
    go_on.set()
    await sends_done()

    assert layer.channels[channel].qsize() == 2
