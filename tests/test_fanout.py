"""Local fan-out: a run's events reach this process's subscribers directly, once each, in order;
the channel layer carries them only to other processes (on Redis), never on the in-memory layer.
"""

import asyncio
import threading
import uuid
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer, channel_layers

from deerflow_site.bridge import Executor, call_sync
from runs.engine import Subscription, bus, fanout, publishing

ON_REDIS = not isinstance(bus.layer(), InMemoryChannelLayer)
THREAD_ID = "fanout-thread"
EVENTS = 50
WAIT = 20.0


@pytest.fixture(autouse=True)
async def fresh_layer() -> Any:
    """A layer of this test's event loop (the in-memory one's queues are bound to one loop),
    whose listener is stopped at the end."""
    channel_layers.backends.clear()
    yield
    await fanout.stop_listening()
    channel_layers.backends.clear()


def events(count: int = EVENTS, first: int = 1) -> list[bus.StreamEvent]:
    return [bus.StreamEvent.of(n, "custom", {"tick": n}) for n in range(first, first + count)]


async def received_until(subscription: Subscription, last_id: int) -> list[dict[str, Any]]:
    """Messages up to the one with `last_id` (whatever its origin)."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        while not messages or messages[-1]["id"] != last_id:
            message = await subscription.receive(within=WAIT)
            if message is not None:
                messages.append(message)
    return messages


async def sent_by_another_process(group: str, event: bus.StreamEvent, run_id: Any) -> None:
    """What another process's `publish_events` puts on the layer for `group`."""
    message = {
        "type": fanout.EVENTS,
        "group": group,
        "origin": "another-process",
        "events": [event.as_message(run_id)],
    }
    await bus.layer().group_send(group, message)


async def test_a_local_subscriber_gets_each_event_once_and_in_order() -> None:
    run_id = uuid.uuid4()
    subscription = await Subscription.open(bus.run_stream_group(run_id))
    try:
        await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=events())
        if ON_REDIS:
            # Sent after this process's own layer copies: once it is here, they came and went.
            marker = bus.StreamEvent.of(EVENTS + 1, "custom", {"tick": "marker"})
            await sent_by_another_process(bus.run_stream_group(run_id), marker, run_id)
            received = await received_until(subscription, EVENTS + 1)
            assert received.pop()["data"] == marker.data
            # No other process listened: nothing was sent to the layer but the marker.
            assert fanout._hubs[asyncio.get_running_loop()].own_copies_dropped == 0
        else:
            received = await received_until(subscription, EVENTS)
        assert [m["id"] for m in received] == list(range(1, EVENTS + 1))
        assert await subscription.receive(within=0) is None
    finally:
        await subscription.close()


async def test_the_thread_group_gets_every_run_of_the_thread() -> None:
    first_run, second_run = uuid.uuid4(), uuid.uuid4()
    thread = await Subscription.open(bus.thread_stream_group(THREAD_ID))
    run = await Subscription.open(bus.run_stream_group(first_run))
    try:
        await publishing.publish_events(run_id=first_run, thread_id=THREAD_ID, events=events(2))
        await publishing.publish_events(run_id=second_run, thread_id=THREAD_ID, events=events(1))

        got = [await thread.receive(within=WAIT) for _ in range(3)]
        assert [(m["run_id"], m["id"]) for m in got] == [
            (str(first_run), 1),
            (str(first_run), 2),
            (str(second_run), 1),
        ]
        assert [m["id"] for m in [await run.receive(within=WAIT) for _ in range(2)]] == [1, 2]
    finally:
        await thread.close()
        await run.close()


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer reaches no other process")
async def test_events_another_process_publishes_reach_the_local_subscribers_once_each() -> None:
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    first = await Subscription.open(group)
    second = await Subscription.open(group)
    try:
        for event in events(3):
            await sent_by_another_process(group, event, run_id)
        for subscription in (first, second):
            assert [m["id"] for m in await received_until(subscription, 3)] == [1, 2, 3]
    finally:
        await first.close()
        await second.close()


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer reaches no other process")
async def test_while_another_process_listens_it_gets_the_events_and_locals_get_them_once() -> None:
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    channel_layer = bus.layer()
    # Not a channel of this process's hub: to the publisher, another process's listener.
    another_process = await channel_layer.new_channel()
    await channel_layer.group_add(group, another_process)
    local = await Subscription.open(group)
    try:
        await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=events(3))
        remote = await channel_layer.receive(another_process)
        marker = bus.StreamEvent.of(4, "custom", {"tick": "marker"})
        await sent_by_another_process(group, marker, run_id)

        # The publisher's batch of three events is one layer message.
        assert remote["type"] == fanout.EVENTS and remote["origin"] == fanout.PROCESS_ID
        assert [m["id"] for m in remote["events"]] == [1, 2, 3]
        assert [m["id"] for m in await received_until(local, 4)] == [1, 2, 3, 4]
        assert fanout._hubs[asyncio.get_running_loop()].own_copies_dropped == 1
    finally:
        await local.close()
        await channel_layer.group_discard(group, another_process)


@pytest.mark.skipif(ON_REDIS, reason="on Redis the layer carries events to other processes")
async def test_the_in_memory_layer_carries_no_stream_event() -> None:
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    channel_layer = bus.layer()
    raw = await channel_layer.new_channel()
    await channel_layer.group_add(group, raw)
    local = await Subscription.open(group)
    try:
        await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=events(3))
        await channel_layer.group_send(group, {"type": "marker"})

        assert (await channel_layer.receive(raw))["type"] == "marker"
        assert [(await local.receive(within=WAIT))["id"] for _ in range(3)] == [1, 2, 3]
    finally:
        await local.close()
        await channel_layer.group_discard(group, raw)


async def test_a_closed_subscription_hears_nothing_more_and_is_forgotten() -> None:
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    closed = await Subscription.open(group)
    await closed.close()
    await closed.close()  # twice is harmless
    staying = await Subscription.open(group)
    try:
        await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=events(1))

        assert (await staying.receive(within=WAIT))["id"] == 1
        assert await closed.receive(within=0) is None
    finally:
        await staying.close()
    await left_on_the_layer()
    hub = fanout._hubs[asyncio.get_running_loop()]
    assert group not in hub.subscribers
    assert group not in hub._memberships


async def left_on_the_layer() -> None:
    """Until the leaves of this loop's closed subscriptions are done (a close does not wait)."""
    hub = fanout._hubs.get(asyncio.get_running_loop())
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(hub.leaving if hub is not None else ()))


async def _layer_members(group: str) -> set[str]:
    """The channels in `group` on Redis (channels_redis keeps a group as a sorted set)."""
    layer: Any = bus.layer()
    members = await layer.connection(layer.consistent_hash(group)).zrange(
        layer._group_key(group), 0, -1
    )
    return {member.decode() for member in members}


async def test_a_close_returns_at_once_and_leaves_the_groups_in_the_background() -> None:
    # A close never waits on the layer (a hung Redis would hold up the request closing it: a
    # wait's answer goes out after its close). Here the leave waits on the group's membership
    # lock (as behind a join on the layer in progress): the close returns all the same, and the
    # hub's channel leaves the group on the layer once the lock is free (a channel left in a
    # group drew the group's events from every other process, re-joined every
    # GROUP_REFRESH_SECONDS for as long as the hub lived).
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    subscription = await Subscription.open(group)
    hub = fanout._hubs[asyncio.get_running_loop()]
    if ON_REDIS:
        assert hub.channel in await _layer_members(group)
        async with hub._memberships[group].lock:
            await subscription.close()
            assert hub.leaving
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*hub.leaving)
        assert hub.channel not in await _layer_members(group)
    else:  # nothing to leave on the layer
        await subscription.close()
    await subscription.close()  # twice is harmless

    assert group not in hub.subscribers
    assert group not in hub._memberships
    assert not hub.leaving


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer: nothing joined on a layer")
async def test_a_subscribe_its_caller_leaves_midway_leaves_nothing_in_the_group(
    monkeypatch,
) -> None:
    # The client leaves while its subscription's group_add is in flight: the add reached
    # Redis, its answer was never read. The subscription is closed on the way out, and the
    # group must not keep the hub's channel.
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    layer: Any = bus.layer()
    group_add, added, never = layer.group_add, asyncio.Event(), asyncio.Event()

    async def add_then_hang(group: str, channel: str) -> None:
        await group_add(group, channel)
        added.set()
        await never.wait()

    monkeypatch.setattr(layer, "group_add", add_then_hang)
    opening = asyncio.ensure_future(Subscription.open(group))
    async with asyncio.timeout(WAIT):
        await added.wait()
    hub = fanout._hubs[asyncio.get_running_loop()]
    assert hub.channel in await _layer_members(group)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    async with asyncio.timeout(WAIT):  # the open given up on, then its leave
        await asyncio.gather(*fanout._given_up, return_exceptions=True)
        await asyncio.gather(*hub.leaving)

    assert hub.channel not in await _layer_members(group)
    assert group not in hub.subscribers and group not in hub._memberships


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer: nothing joined on a layer")
async def test_a_group_add_that_failed_is_made_again_by_the_next_subscriber(monkeypatch) -> None:
    # Two clients join one run at once; the first one's group_add fails (Redis hiccups).
    # The second, which waited for it, must still get the hub's channel into the group:
    # else it hears nothing from other processes (until the group refresh, minutes later).
    group = bus.run_stream_group(uuid.uuid4())
    layer: Any = bus.layer()
    group_add, adding, fail = layer.group_add, asyncio.Event(), asyncio.Event()
    calls = 0

    async def fail_the_first(group: str, channel: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            adding.set()
            await fail.wait()
            raise ConnectionError("Redis went away")
        await group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", fail_the_first)
    first = asyncio.ensure_future(Subscription.open(group))
    async with asyncio.timeout(WAIT):
        await adding.wait()
    second = asyncio.ensure_future(Subscription.open(group))
    await asyncio.sleep(0)  # the second waits for the first's add
    fail.set()
    with pytest.raises(ConnectionError):
        await first
    async with asyncio.timeout(WAIT):
        subscription = await second
    hub = fanout._hubs[asyncio.get_running_loop()]
    try:
        assert hub.channel in await _layer_members(group)
    finally:
        await subscription.close()


async def test_a_subscriber_that_does_not_read_keeps_at_most_the_capacity(settings) -> None:
    settings.CHANNEL_CAPACITY = 5
    run_id = uuid.uuid4()
    subscription = await Subscription.open(bus.run_stream_group(run_id))
    try:
        await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=events(8))
        kept = []
        while (message := await subscription.receive(within=0)) is not None:
            kept.append(message["id"])
        assert kept == [1, 2, 3, 4, 5]  # newer ones dropped, as the channel layer drops them
    finally:
        await subscription.close()


async def test_a_wait_hears_only_the_end_past_a_full_capacity(settings) -> None:
    """A wait's subscription (`bus.run_end_group`): the run's other events neither wake it nor
    fill its inbox, so its `end` is never dropped behind them."""
    settings.CHANNEL_CAPACITY = 5
    run_id = uuid.uuid4()
    ends_only = await Subscription.open(bus.run_end_group(run_id))
    everything = await Subscription.open(bus.run_stream_group(run_id))
    try:
        end = bus.StreamEvent.of(9, "end", None)
        await publishing.publish_events(
            run_id=run_id, thread_id=THREAD_ID, events=[*events(8), end]
        )
        if ON_REDIS:
            marker = bus.StreamEvent.of(10, "end", {"marker": True})
            await sent_by_another_process(bus.run_end_group(run_id), marker, run_id)
            received = await received_until(ends_only, 10)
        else:
            received = await received_until(ends_only, 9)
        assert [m["id"] for m in received][:1] == [9]
        assert {m["event"] for m in received} == {"end"}
        assert await ends_only.receive(within=0) is None
        assert (await everything.receive(within=0))["id"] == 1
    finally:
        await ends_only.close()
        await everything.close()


async def test_a_subscriber_waiting_on_another_event_loop_is_woken() -> None:
    run_id = uuid.uuid4()
    subscribed = threading.Event()
    received: list[int] = []

    async def listen() -> None:
        subscription = await Subscription.open(bus.run_stream_group(run_id))
        subscribed.set()
        try:
            message = await subscription.receive(within=WAIT)
            received.append(message["id"] if message else -1)
        finally:
            await subscription.close()
            await fanout.stop_listening()

    listener = threading.Thread(target=asyncio.run, args=(listen(),))
    listener.start()
    await call_sync(subscribed.wait, WAIT, on=Executor.BLOCKING)
    await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=events(1))
    await call_sync(listener.join, WAIT, on=Executor.BLOCKING)

    assert received == [1]


def with_end(count: int) -> list[bus.StreamEvent]:
    """`count` events, then the run's `end`."""
    return [*events(count), bus.StreamEvent.of(count + 1, bus.END, None)]


async def test_the_end_group_hears_the_run_end_alone_and_locals_make_no_answer() -> None:
    run_id = uuid.uuid4()
    ends = await Subscription.open(bus.run_end_group(run_id))
    stream = await Subscription.open(bus.run_stream_group(run_id))
    made: list[int] = []

    def answer() -> bytes:
        made.append(1)
        return b'{"reply":"x"}'

    try:
        await publishing.publish_events(
            run_id=run_id, thread_id=THREAD_ID, events=with_end(3), answer=answer
        )

        assert [m["id"] for m in await received_until(stream, 4)] == [1, 2, 3, 4]
        [end] = await received_until(ends, 4)
        # Waiters here take the answer the run's end left in this process (`answers.offer`).
        assert end["event"] == bus.END and "answer" not in end
        assert made == []
        assert await ends.receive(within=0) is None
    finally:
        await ends.close()
        await stream.close()


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer reaches no other process")
async def test_another_process_waiting_for_the_end_gets_it_alone_with_its_answer() -> None:
    run_id = uuid.uuid4()
    end_group, run_group = bus.run_end_group(run_id), bus.run_stream_group(run_id)
    channel_layer = bus.layer()
    waiting, streaming = await channel_layer.new_channel(), await channel_layer.new_channel()
    await channel_layer.group_add(end_group, waiting)
    await channel_layer.group_add(run_group, streaming)
    made: list[int] = []

    def answer() -> bytes:
        made.append(1)
        return b'{"reply":"x"}'

    try:
        await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=events(2))
        await publishing.publish_events(
            run_id=run_id,
            thread_id=THREAD_ID,
            events=[bus.StreamEvent.of(3, bus.END, None)],
            answer=answer,
        )

        streamed = [await channel_layer.receive(streaming) for _ in range(2)]
        assert [[e["id"] for e in m["events"]] for m in streamed] == [[1, 2], [3]]
        assert all("answer" not in e for m in streamed for e in m["events"])
        ended = await channel_layer.receive(waiting)  # the first thing the waiter hears
        assert ended["type"] == fanout.EVENTS and ended["group"] == end_group
        [end] = ended["events"]
        assert (end["id"], end["event"], end["answer"]) == (3, bus.END, b'{"reply":"x"}')
        assert made == [1]
    finally:
        await channel_layer.group_discard(end_group, waiting)
        await channel_layer.group_discard(run_group, streaming)


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer reaches no other process")
async def test_with_no_other_process_waiting_no_answer_is_made() -> None:
    run_id = uuid.uuid4()
    made: list[int] = []

    def answer() -> bytes:
        made.append(1)
        return b"{}"

    await publishing.publish_events(
        run_id=run_id, thread_id=THREAD_ID, events=with_end(1), answer=answer
    )
    assert made == []


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer reaches no other process")
async def test_the_end_closes_its_group_and_its_waiters_need_not_leave_it() -> None:
    """Another process's end comes with its group closed on Redis: the waiters' process is out
    of it without a discard, and a waiter that comes later joins (and leaves) a new group."""
    run_id = uuid.uuid4()
    end_group = bus.run_end_group(run_id)
    layer: Any = bus.layer()
    hub = fanout._hub_of_this_loop()
    # Another process's channel waits too, and a publisher of this process sends it the end.
    another_process = await layer.new_channel()
    await layer.group_add(end_group, another_process)
    await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=with_end(0))
    sent = await layer.receive(another_process)
    assert sent["events"][0]["event"] == bus.END and sent[fanout.CLOSED] is True
    assert await _layer_members(end_group) == set()

    first, second = [await Subscription.open(end_group) for _ in range(2)]
    assert await _layer_members(end_group) == {hub.channel}
    end = bus.StreamEvent.of(1, bus.END, None).as_message(run_id)
    closing = {"type": fanout.EVENTS, "group": end_group, "origin": "another-process"}
    await layer.group_send_many(
        [(end_group, {**closing, "events": [end], fanout.CLOSED: True})],
        closing=frozenset({end_group}),
    )
    for waiter in (first, second):
        assert (await waiter.receive(within=WAIT))["event"] == bus.END
    assert await _layer_members(end_group) == set()
    discarded: list[str] = []

    async def discard(group: str, channel: str) -> None:
        discarded.append(group)

    layer.group_discard = discard
    try:
        await first.close()
        await second.close()
        await left_on_the_layer()
    finally:
        del layer.group_discard
    assert discarded == [] and end_group not in hub._memberships
    assert await _layer_members(end_group) == set()

    late = await Subscription.open(end_group)
    assert await _layer_members(end_group) == {hub.channel}
    await late.close()
    await left_on_the_layer()
    assert await _layer_members(end_group) == set()
