"""A run's publisher skips looking its stream groups' members up on Redis while no other process
listened at its last look-up, until a subscriber of another process announces itself
(`publishing.announce_listener` -> `bus.LISTEN` -> `publishing.note_listener`). Across real
processes: tests/test_multiprocess.py (streams joined mid-run hear every later event)."""

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from runs.engine import Subscription, bus, fanout, publishing
from runs.sse import run_stream
from tests.test_fanout import fresh_layer  # noqa: F401 (autouse: a layer of each test's loop)

pytestmark = pytest.mark.skipif(
    isinstance(bus.layer(), InMemoryChannelLayer),
    reason="the in-memory layer reaches no other process: nothing is looked up",
)
THREAD_ID = "announce-thread"
WAIT = 20.0


def batch(first: int, count: int = 2, *, end: bool = False) -> list[bus.StreamEvent]:
    events = [bus.StreamEvent.of(n, "custom", {"tick": n}) for n in range(first, first + count)]
    return events + ([bus.StreamEvent.of(first + count, bus.END, None)] if end else [])


async def publish(run_id: Any, events: list[bus.StreamEvent], *, publisher: bool = True) -> None:
    await publishing.publish_events(
        run_id=run_id, thread_id=THREAD_ID, events=events, publisher=publisher
    )


async def ids_received(channel: str, messages: int) -> list[list[int]]:
    """The event ids of the next `messages` layer messages on `channel`."""
    async with asyncio.timeout(WAIT):
        received = [await bus.layer().receive(channel) for _ in range(messages)]
    return [[event["id"] for event in message["events"]] for message in received]


async def test_a_publisher_skips_the_layer_while_unheard_until_a_listener_announces() -> None:
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    channel_layer = bus.layer()
    other = await channel_layer.new_channel()  # another process's listening channel
    try:
        await publish(run_id, batch(1))  # looked up: no one listens
        await channel_layer.group_add(group, other)
        await publish(run_id, batch(3))  # not looked up: the joiner did not announce itself
        await publish(run_id, batch(5), publisher=False)  # others' publishes always look up
        publishing.note_listener({"run_id": str(run_id)})
        await publish(run_id, batch(7))
        await publish(run_id, batch(9, end=True))  # an end is always looked up

        assert await ids_received(other, 3) == [[5, 6], [7, 8], [9, 10, 11]]
    finally:
        await channel_layer.group_discard(group, other)
        publishing.forget_run(run_id)


async def test_a_run_ends_unheard_and_a_new_publisher_of_it_looks_up_again() -> None:
    run_id = uuid.uuid4()
    group = bus.thread_stream_group(THREAD_ID)
    channel_layer = bus.layer()
    other = await channel_layer.new_channel()
    try:
        await publish(run_id, batch(1))
        await publish(run_id, batch(3, end=True))
        await channel_layer.group_add(group, other)  # joined between two executions of the run
        await publish(run_id, batch(10))

        assert await ids_received(other, 1) == [[10, 11]]
    finally:
        await channel_layer.group_discard(group, other)
        publishing.forget_run(run_id)


async def test_a_run_found_unheard_is_looked_up_again_after_a_while(monkeypatch) -> None:
    """A subscriber that joined again after Redis lost its groups announces nothing: it is
    found when the unheard run's batches look up again, UNHEARD_SECONDS later."""
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    channel_layer = bus.layer()
    other = await channel_layer.new_channel()
    try:
        await publish(run_id, batch(1))  # unheard
        await channel_layer.group_add(group, other)
        monkeypatch.setattr(publishing, "UNHEARD_SECONDS", 0.0)  # as if a while had passed
        await publish(run_id, batch(3))

        assert await ids_received(other, 1) == [[3, 4]]
    finally:
        await channel_layer.group_discard(group, other)
        publishing.forget_run(run_id)


async def test_an_announcement_during_a_look_up_keeps_the_run_looked_up(monkeypatch) -> None:
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    channel_layer = bus.layer()
    send_many = channel_layer.group_send_many

    async def announced_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = await send_many(*args, **kwargs)
        publishing.note_listener({"run_id": str(run_id)})  # came while the look-up was out
        return found

    other = await channel_layer.new_channel()
    try:
        monkeypatch.setattr(channel_layer, "group_send_many", announced_meanwhile)
        await publish(run_id, batch(1))  # found no one, but a listener announced itself
        monkeypatch.setattr(channel_layer, "group_send_many", send_many)
        await channel_layer.group_add(group, other)
        await publish(run_id, batch(3))

        assert await ids_received(other, 1) == [[3, 4]]
    finally:
        await channel_layer.group_discard(group, other)
        publishing.forget_run(run_id)


async def test_an_announced_listener_waits_for_the_workers_answer() -> None:
    run_id = uuid.uuid4()
    worker_id = f"announce-worker-{uuid.uuid4().hex}"
    channel_layer = bus.layer()
    worker_channel = await channel_layer.new_channel()
    await channel_layer.group_add(bus.worker_control_group(worker_id), worker_channel)
    await publish(run_id, batch(1))  # unheard
    noted: list[dict[str, Any]] = []

    async def worker() -> None:  # what `RunWorker._listen` does with a LISTEN
        message = await channel_layer.receive(worker_channel)
        noted.append(message)
        publishing.note_listener(message)

    subscription = await Subscription.open(bus.run_stream_group(run_id))
    answering = asyncio.ensure_future(worker())
    try:
        async with asyncio.timeout(WAIT):
            await publishing.announce_listener(run_id=run_id, worker_id=worker_id)
        assert answering.done()
        [message] = noted
        assert (message["type"], message["run_id"]) == (bus.LISTEN, str(run_id))
        assert str(run_id) not in publishing._unheard
    finally:
        answering.cancel()
        await subscription.close()
        await channel_layer.group_discard(bus.worker_control_group(worker_id), worker_channel)
        publishing.forget_run(run_id)


async def test_a_worker_that_never_answers_is_not_waited_for_beyond_the_bound(
    monkeypatch, caplog
) -> None:
    monkeypatch.setattr(bus, "SEND_SECONDS", 0.2)
    run_id = uuid.uuid4()
    subscription = await Subscription.open(bus.run_stream_group(run_id))
    try:
        async with asyncio.timeout(WAIT):
            await publishing.announce_listener(run_id=run_id, worker_id="gone")
        assert "did not answer a stream's listener" in caplog.text
    finally:
        await subscription.close()


async def listening_worker(worker_id: str) -> str:
    """A channel in the worker's control group (what `RunWorker` listens on)."""
    channel = await bus.layer().new_channel()
    await bus.layer().group_add(bus.worker_control_group(worker_id), channel)
    return channel


@pytest.fixture
def no_worker_unanswered(monkeypatch) -> None:
    """No worker is known here not to answer (`publishing._unanswered`, left as it was)."""
    monkeypatch.setattr(publishing, "_unanswered", {}, raising=False)


def buffered_answers() -> list[dict[str, Any]]:
    """The answers to announcements that wait in channels_redis's receive buffer (for a channel
    no one receives on: they would stay there for the process's life)."""
    buffers = list(bus.layer().receive_buffer.values())
    waiting = [message for buffer in buffers for message in list(buffer._queue)]
    return [message for message in waiting if message.get("type") == bus.LISTENING]


async def test_an_answer_after_the_bound_is_dropped_not_kept(
    monkeypatch, caplog, no_worker_unanswered
) -> None:
    monkeypatch.setattr(bus, "SEND_SECONDS", 0.2)
    run_id, worker_id = uuid.uuid4(), f"late-worker-{uuid.uuid4().hex}"
    worker_channel = await listening_worker(worker_id)
    group = bus.run_stream_group(run_id)
    subscription = await Subscription.open(group)
    try:
        announcing = asyncio.ensure_future(
            publishing.announce_listener(run_id=run_id, worker_id=worker_id)
        )
        async with asyncio.timeout(WAIT):
            listen = await bus.layer().receive(worker_channel)
            await announcing  # given up: the worker has not answered yet
            publishing.note_listener(listen)  # the late answer
            await asyncio.gather(*publishing._answering)
            # A message after it on the same process's channels: once it is here, the answer
            # was taken off Redis too.
            marker = {"type": fanout.EVENTS, "group": group, "origin": "other", "events": [{}]}
            await bus.layer().group_send(group, marker)
            assert await subscription.receive(within=WAIT) == {}
        assert "did not answer a stream's listener" in caplog.text
        assert buffered_answers() == []
    finally:
        await subscription.close()
        await bus.layer().group_discard(bus.worker_control_group(worker_id), worker_channel)


async def test_a_thread_streams_announcements_wait_together(caplog, no_worker_unanswered) -> None:
    """A thread stream announces itself to the workers of all the thread's running runs at
    once: a worker that answers once both came (a worker that never answers each) holds the
    stream up one bound, not one per run."""
    worker_id = f"both-worker-{uuid.uuid4().hex}"
    worker_channel = await listening_worker(worker_id)
    subscription = await Subscription.open(bus.thread_stream_group(THREAD_ID))

    async def worker() -> None:
        came = [await bus.layer().receive(worker_channel) for _ in range(2)]
        for message in came:
            publishing.note_listener(message)

    answering = asyncio.ensure_future(worker())
    try:
        async with asyncio.timeout(WAIT):
            await run_stream._announce(subscription, [(uuid.uuid4(), worker_id)] * 2)
            await answering
        assert "did not answer a stream's listener" not in caplog.text
    finally:
        answering.cancel()
        await subscription.close()
        await bus.layer().group_discard(bus.worker_control_group(worker_id), worker_channel)


async def test_a_worker_that_did_not_answer_is_not_waited_for_again(
    monkeypatch, caplog, no_worker_unanswered
) -> None:
    monkeypatch.setattr(bus, "SEND_SECONDS", 0.2)
    worker_id = f"mute-worker-{uuid.uuid4().hex}"
    worker_channel = await listening_worker(worker_id)
    subscription = await Subscription.open(bus.thread_stream_group(THREAD_ID))
    try:
        async with asyncio.timeout(WAIT):
            await publishing.announce_listener(run_id=uuid.uuid4(), worker_id=worker_id)
            assert caplog.text.count("did not answer a stream's listener") == 1
            monkeypatch.setattr(bus, "SEND_SECONDS", WAIT)  # a wait would now be seen
            await publishing.announce_listener(run_id=uuid.uuid4(), worker_id=worker_id)
            received = [await bus.layer().receive(worker_channel) for _ in range(2)]
        assert [message["type"] for message in received] == [bus.LISTEN] * 2  # both sent
        assert caplog.text.count("did not answer a stream's listener") == 1
    finally:
        await subscription.close()
        await bus.layer().group_discard(bus.worker_control_group(worker_id), worker_channel)
