"""The Redis channel layer (runs/engine/redis_layer.py): a group's send and add, and a receive,
behave as channels_redis's own, on the same keys, so that processes with either layer understand
each other: every member gets the message, expired members are dropped, capacities hold, what a
receive left in its backup queue comes back, a cancelled receive loses nothing."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer as ChannelsRedisChannelLayer
from django.conf import settings

from runs.engine.redis_layer import RedisChannelLayer
from tests.waiting import read_until

pytestmark = pytest.mark.skipif(
    not settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("RedisChannelLayer"),
    reason="needs Redis",
)

RECEIVE_SECONDS = 10.0


def hosts() -> list[Any]:
    return settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]


@pytest.fixture
async def layers() -> AsyncIterator[tuple[RedisChannelLayer, ChannelsRedisChannelLayer]]:
    """Ours and channels_redis's on one Redis, with one prefix of the test's own."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    ours = RedisChannelLayer(hosts=hosts(), prefix=prefix, capacity=2)
    theirs = ChannelsRedisChannelLayer(hosts=hosts(), prefix=prefix, capacity=2)
    yield ours, theirs
    await ours.flush()
    await theirs.close_pools()


async def receive(layer: Any, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), RECEIVE_SECONDS)


@pytest.mark.parametrize("sender", ["ours", "theirs"])
@pytest.mark.parametrize("adder", ["ours", "theirs"])
async def test_every_member_gets_the_message_whichever_layer_adds_and_sends(
    layers: tuple[Any, Any], sender: str, adder: str
) -> None:
    by_name = dict(zip(("ours", "theirs"), layers, strict=True))
    receiver = by_name["theirs" if sender == "ours" else "ours"]
    local = await receiver.new_channel()  # a process-local channel (`specific.…!…`)
    plain = f"plain-{uuid.uuid4().hex[:8]}"
    await by_name[adder].group_add("g", local)
    await by_name[adder].group_add("g", plain)

    await by_name[sender].group_send("g", {"type": "t", "n": 1})
    await by_name[sender].group_send("g", {"type": "t", "n": 2})

    assert [(await receive(receiver, local))["n"] for _ in range(2)] == [1, 2]
    assert [(await receive(receiver, plain))["n"] for _ in range(2)] == [1, 2]
    group_key = receiver._group_key("g")
    redis = receiver.connection(0)
    assert 0 < await redis.ttl(group_key) <= receiver.group_expiry


async def test_a_send_to_several_groups_is_the_sends_one_by_one(
    layers: tuple[RedisChannelLayer, Any],
) -> None:
    """What `publishing.publish_events` sends for a batch: to the run's group and the thread's (a
    channel in both gets both, in order; a group without members is skipped)."""
    ours = RedisChannelLayer(hosts=hosts(), prefix=layers[0].prefix, capacity=10)
    local = await ours.new_channel()
    await ours.group_add("run", local)
    await ours.group_add("thread", local)
    await ours.group_add("thread", "thread-only")

    for _ in range(5):  # the order of a channel's messages is not left to chance
        await ours.group_send_many(
            [
                ("run", {"type": "t", "n": 1}),
                ("nobody", {"type": "t", "n": 2}),
                ("thread", {"type": "t", "n": 3}),
                ("run", {"type": "t", "n": 4}),
            ]
        )

        assert [(await receive(ours, local))["n"] for _ in range(3)] == [1, 3, 4]
        assert (await receive(ours, "thread-only"))["n"] == 3
    assert await ours.connection(0).exists(ours._group_key("nobody")) == 0
    await ours.close_pools()


@pytest.mark.parametrize("entries", [1, 14, 15, 40])
async def test_a_message_put_together_in_redis_is_channels_redis_own(
    layers: tuple[RedisChannelLayer, Any], entries: int
) -> None:
    """A group's message for a Redis key, put together by `SEND_TO_GROUPS`, is channels_redis's
    serialisation of it byte for byte (but the random prefix), whatever the sizes of its map,
    its channels' list and their names."""
    ours, theirs = layers
    assert ours._sends_in_one_trip
    message = {"type": "t", **{f"k{n}": n for n in range(entries - 1)}}
    local = [await theirs.new_channel() for _ in range(17)]  # 17 channels of one Redis key
    long_named, short_named = f"plain-{'x' * 90}", "p"  # msgpack's str8 and fixstr
    for channel in (*local, long_named, short_named):
        await ours.group_add("g", channel)

    assert await ours.group_send_many([("g", message)]) == {"g"}

    redis = ours.connection(0)
    for key, channels in (
        (theirs.non_local_name(local[0]), local),
        (long_named, [long_named]),
        (short_named, [short_named]),
    ):
        [stored] = await redis.zrange(ours.prefix + key, 0, -1)
        expected = theirs.serialize({**message, "__asgi_channel__": channels})
        assert stored[12:] == expected[12:]
    got = [await receive(theirs, channel) for channel in local]
    assert got == [message] * 17


async def test_a_member_past_the_group_expiry_is_dropped_and_gets_nothing(
    layers: tuple[RedisChannelLayer, Any],
) -> None:
    ours, _ = layers
    stale, fresh = "stale-member", "fresh-member"
    await ours.group_add("g", fresh)
    redis = ours.connection(0)
    await redis.zadd(ours._group_key("g"), {stale: time.time() - ours.group_expiry - 10})

    await ours.group_send("g", {"type": "t", "n": 1})

    assert (await receive(ours, fresh))["n"] == 1
    members = await redis.zrange(ours._group_key("g"), 0, -1)
    assert members == [fresh.encode()]
    assert await redis.exists(ours.prefix + stale) == 0


async def test_a_member_at_capacity_gets_no_more(layers: tuple[RedisChannelLayer, Any]) -> None:
    ours, _ = layers  # capacity 2
    full, other = "full-member", "other-member"
    await ours.group_add("g", full)
    for n in (1, 2):
        await ours.send(full, {"type": "t", "n": n})
    await ours.group_add("g", other)

    await ours.group_send("g", {"type": "t", "n": 3})

    assert [(await receive(ours, full))["n"] for _ in range(2)] == [1, 2]
    assert (await receive(ours, other))["n"] == 3
    assert await ours.connection(0).zcard(ours.prefix + full) == 0


async def test_a_group_without_members_is_a_no_op(layers: tuple[RedisChannelLayer, Any]) -> None:
    ours, _ = layers

    await ours.group_send("nobody-here", {"type": "t"})

    assert await ours.connection(0).exists(ours._group_key("nobody-here")) == 0


async def test_a_message_left_in_the_backup_is_received_first(
    layers: tuple[RedisChannelLayer, Any],
) -> None:
    """What an interrupted receive (of this process's previous life) left in the backup queue
    comes back at the first receive, before what was sent after it."""
    ours, _ = layers
    channel = "backed-up"
    key = ours.prefix + channel
    redis = ours.connection(0)
    left = ours.serialize({"type": "t", "n": 1})
    await redis.zadd(ours._backup_channel_name(key), {left: time.time()})
    await ours.send(channel, {"type": "t", "n": 2})

    assert [(await receive(ours, channel))["n"] for _ in range(2)] == [1, 2]
    assert await redis.exists(ours._backup_channel_name(key)) == 0


async def test_receives_after_a_cancelled_one_lose_nothing(
    layers: tuple[RedisChannelLayer, Any],
) -> None:
    ours, theirs = layers
    channel = await ours.new_channel()
    for n in (1, 2):  # the backup known empty after each
        await theirs.send(channel, {"type": "t", "n": n})
        assert (await receive(ours, channel))["n"] == n
    redis = ours.connection(0)
    blocked_before = (await redis.info("clients"))["blocked_clients"]
    waiting = asyncio.ensure_future(ours.receive(channel))
    await until_blocked(redis, more_than=blocked_before)  # in its pop: nothing is sent meanwhile
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting

    for n in (3, 4):  # the layers' capacity: 2
        await theirs.send(channel, {"type": "t", "n": n})
    assert [(await receive(ours, channel))["n"] for _ in range(2)] == [3, 4]
    key = ours.prefix + ours.non_local_name(channel)
    await ours.wait_received()
    assert await redis.zcard(ours._backup_channel_name(key)) == 0


async def until_blocked(redis: Any, *, more_than: int) -> None:
    """Until Redis counts more clients blocked in a pop than `more_than`."""
    await read_until(
        lambda: redis.info("clients"),
        f"more than {more_than} Redis clients blocked in a pop",
        accept=lambda info: info["blocked_clients"] > more_than,
    )


async def test_a_receive_cancelled_as_its_message_arrives_loses_nothing(
    layers: tuple[RedisChannelLayer, Any],
) -> None:
    """A process-local channel keeps no backup queue: the pop of a cancelled receive goes on,
    and the next receive takes what it popped, in order."""
    ours, theirs = layers
    channel = await ours.new_channel()
    redis = ours.connection(0)
    key = ours.prefix + ours.non_local_name(channel)
    for n in range(1, 6):
        blocked_before = (await redis.info("clients"))["blocked_clients"]
        waiting = asyncio.ensure_future(ours.receive(channel))
        await until_blocked(redis, more_than=blocked_before)
        await theirs.send(channel, {"type": "t", "n": n})
        waiting.cancel()  # before, as or after its pop answered
        with contextlib.suppress(asyncio.CancelledError):
            received = await waiting
            assert received["n"] == n
            continue
        assert (await receive(ours, channel))["n"] == n
    await theirs.send(channel, {"type": "t", "n": 6})
    assert (await receive(ours, channel))["n"] == 6
    assert await redis.exists(ours._backup_channel_name(key)) == 0
