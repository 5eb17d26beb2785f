"""A run's publisher: events go out in order, those of one turn of the loop together; with
nothing but this process's listeners to serve they need no task, and with none of those they
are not even serialised; a resumable run's events are stored before `drain` returns."""

import asyncio
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus
from runs.engine.fanout import Subscription
from runs.engine.streaming import EventPublisher
from runs.models import RunStreamEvent
from tests.engine_support import RunListener, make_thread, pending_run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer"),
]


class _Watched:
    """A payload that counts how often it was serialised (as its repr)."""

    def __init__(self) -> None:
        self.serialised = 0

    def __repr__(self) -> str:
        self.serialised += 1
        return "watched"


async def _run(user: Any, *, resumable: bool) -> Any:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    return await call_sync(
        pending_run, thread=thread, user=user, resumable=resumable, on=Executor.THREAD_SENSITIVE
    )


async def test_a_local_runs_events_reach_its_listeners_in_order_without_a_task(user: Any) -> None:
    run = await _run(user, resumable=False)
    async with RunListener(run.pk) as listener:
        tasks_before = len(asyncio.all_tasks())
        publisher = EventPublisher(run)
        publisher.start()
        for tick in range(3):
            publisher.emit("custom", {"tick": tick})
        await asyncio.sleep(0)  # the next turn of the loop
        tasks_meanwhile = len(asyncio.all_tasks())
        publisher.emit("end", None)
        await publisher.close()
        events = await listener.until_end()

    assert [(e.id, e.event) for e in events] == [
        (1, "custom"),
        (2, "custom"),
        (3, "custom"),
        (4, "end"),
    ]
    assert [e.data for e in events[:3]] == [{"tick": 0}, {"tick": 1}, {"tick": 2}]
    if not bus.reaches_other_processes():  # else other processes may listen: a task sends
        assert tasks_meanwhile == tasks_before


async def test_a_resumable_runs_events_are_stored_before_drain_returns(user: Any) -> None:
    run = await _run(user, resumable=True)
    publisher = EventPublisher(run)
    publisher.start()
    async with RunListener(run.pk) as listener:
        publisher.emit("custom", {"tick": 1})
        await asyncio.sleep(0)  # its publish is under way
        publisher.emit("custom", {"tick": 2})  # waits for it, then goes
        await publisher.drain()
        stored = [
            seq
            async for seq in RunStreamEvent.objects.filter(run=run)
            .order_by("seq")
            .values_list("seq", flat=True)
        ]
        publisher.emit("end", None)
        await publisher.close()
        events = await listener.until_end()

    assert stored == [1, 2]
    assert [e.id for e in events] == [1, 2, 3]


async def test_events_no_one_can_hear_are_numbered_and_dropped_and_the_end_always_goes(
    user: Any,
) -> None:
    run = await _run(user, resumable=False)
    end_only = await Subscription.open(bus.run_end_group(run.pk))  # a `/wait`'s
    publisher = EventPublisher(run)
    publisher.start()
    watched = _Watched()
    publisher.emit("values", watched)  # no listener of the stream yet
    await asyncio.sleep(0)
    async with RunListener(run.pk) as listener:
        publisher.emit("values", {"step": 2})
        publisher.emit("end", None)
        await publisher.close()
        events = await listener.until_end()
    ended = await end_only.receive(within=20)
    await end_only.close()

    heard, after = [(e.id, e.event) for e in events], [(2, "values"), (3, "end")]
    if bus.reaches_other_processes():  # the first one, sent through the layer, may come late
        assert heard in (after, [(1, "values"), *after])
    else:
        assert heard == after
    assert ended is not None and (ended["id"], ended["event"]) == (3, "end")
    # Serialised (as its repr) only where another process might listen through the layer.
    assert watched.serialised == (1 if bus.reaches_other_processes() else 0)


async def test_a_thread_streams_listener_hears_its_runs_events(user: Any) -> None:
    run = await _run(user, resumable=False)
    thread_listener = await Subscription.open(bus.thread_stream_group(run.thread_id))
    publisher = EventPublisher(run)
    publisher.start()
    publisher.emit("values", {"step": 1})
    publisher.emit("end", None)
    await publisher.close()
    heard = [await thread_listener.receive(within=20), await thread_listener.receive(within=20)]
    await thread_listener.close()

    assert [(m["id"], m["event"]) for m in heard if m is not None] == [(1, "values"), (2, "end")]
