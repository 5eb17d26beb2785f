"""A channel layer that leaves a batch unanswered (a hung Redis) is silent for the publishers of
this process: their next batches skip it without a wait, then one probe at a time goes in the
background, and once one is answered every batch reaches other processes again, in order
(`publishing`'s module docstring). A hung Redis across real processes:
tests/test_redis_hang_publishing.py."""

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from runs.engine import bus, publishing
from tests.test_fanout import fresh_layer  # noqa: F401 (autouse: a layer of each test's loop)

pytestmark = pytest.mark.skipif(
    isinstance(bus.layer(), InMemoryChannelLayer),
    reason="the in-memory layer reaches no other process: nothing is sent on it",
)
THREAD_ID = "silent-thread"
WAIT = 20.0


def batch(first: int) -> list[bus.StreamEvent]:
    return [bus.StreamEvent.of(first, "custom", {"tick": first})]


async def publish(run_id: Any, first: int) -> None:
    """A batch of one event, as a reaper publishes (every batch looks its groups up)."""
    await publishing.publish_events(run_id=run_id, thread_id=THREAD_ID, events=batch(first))


async def test_a_silent_layer_is_skipped_then_probed_and_answers_in_order_again(
    monkeypatch, caplog
) -> None:
    monkeypatch.setattr(bus, "SEND_SECONDS", 0.2)
    monkeypatch.setattr(publishing, "_silent_since", None, raising=False)
    monkeypatch.setattr(publishing, "_probe", None, raising=False)
    run_id = uuid.uuid4()
    group = bus.run_stream_group(run_id)
    layer: Any = bus.layer()
    other = await layer.new_channel()  # another process's listening channel
    await layer.group_add(group, other)
    send_many, hung, never = layer.group_send_many, [], asyncio.Event()

    async def unanswered(*args: Any, **kwargs: Any) -> Any:
        hung.append(args)
        await never.wait()

    try:
        monkeypatch.setattr(layer, "group_send_many", unanswered)
        async with asyncio.timeout(WAIT):
            await publish(run_id, 1)  # given up after the bound: the layer is silent
            assert publishing._silent_since is not None
            await publish(run_id, 2)  # skipped: no wait, no send
            assert len(hung) == 1

            monkeypatch.setattr(layer, "group_send_many", send_many)  # Redis answers again
            monkeypatch.setattr(publishing, "SILENT_SECONDS", 0.0)
            await publish(run_id, 3)  # the probe, in the background
            probe = publishing._probe
            assert probe is not None
            await publish(run_id, 4)  # skipped while the probe is in flight
            await probe
            assert publishing._silent_since is None
            await publish(run_id, 5)  # the layer answers: sent, after the probe's
            received = [await layer.receive(other) for _ in range(2)]
        assert [[event["id"] for event in message["events"]] for message in received] == [[3], [5]]
        assert "answers again" in caplog.text
    finally:
        await layer.group_discard(group, other)
