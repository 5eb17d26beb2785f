"""The Redis channel layer: channels_redis's, with a group's send and add and a receive in
fewer round trips.

channels_redis sends to a group in four round trips to Redis (drop the group's expired members,
read the members, drop the members' expired messages, a script that adds the message to each
member under its capacity) and adds to a group in two (ZADD, EXPIRE). Every run pays several
group sends (the queue's wake-up, each batch of its events to two groups), so this layer does
the same work in two round trips for a send (a script that drops the expired members and reads
the rest; a script that drops expired messages and adds the message), also for a send to several
groups at once (`group_send_many`: a batch of a run's events to its run's group and its
thread's), and one for an add (both commands in one script). When every message of a send is
made beforehand and the layer's messages are plain msgpack (no encryption) with one capacity for
every channel, a send is one round trip (`SEND_TO_GROUPS`: the script reads the members and puts
each Redis key's message together, channels_redis's bytes with its `__asgi_channel__` appended):
the queue's wake-up, a cancel, a batch of events with listeners. The keys, the values, the
expiries and the capacities are channels_redis's own: processes with either layer understand
each other. With several Redis hosts (sharding) a group's members may live on other hosts than
the group, so channels_redis's own send is used.

A receive of channels_redis takes a message in three round trips and a task: the blocking pop,
a copy into the channel's backup queue (a script that puts back what an interrupted receive left
there runs first), and the backup's clean-up, in a task of its own, once the message is handed
over. The backup keeps a popped message from being lost when its receive is cancelled. A
process-local channel (`specific.…!…`, what `new_channel` makes: the wake-ups' and cancels'
channel of a worker, a hub's listening channel) is popped by this process alone and dies with
it, so this layer keeps that message in memory instead: the pop runs in a task of its own, a
cancelled receive leaves it running, and the next receive on the channel takes what it popped.
One round trip per message, no backup, no clean-up task. Other channels (which any process may
pop) keep channels_redis's backup.
"""

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import msgpack
from channels_redis.core import RedisChannelLayer as ChannelsRedisChannelLayer
from channels_redis.serializers import MsgPackSerializer
from redis.exceptions import NoScriptError

logger = logging.getLogger(__name__)


class _Script:
    """A Lua script run by its SHA1 (EVALSHA), its text sent only when Redis lacks it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # Redis's id of the script

    async def run(self, connection: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await connection.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await connection.eval(self.text, len(keys), *keys, *args)


#: KEYS: groups' sorted sets; ARGV[1]: members added before this (epoch seconds) expired; then
#: per key '1' when the group closes (it is deleted once read). Returns the members of each group.
GROUPS_MEMBERS = _Script(
    """
local members = {}
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    members[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
    if ARGV[i + 1] == '1' then
        redis.call('DEL', KEYS[i])
    end
end
return members
"""
)
#: KEYS[1]: a group's sorted set; ARGV: the channel, its score (epoch seconds), the key's expiry
#: (seconds). channels_redis's ZADD and EXPIRE, as one command (cheaper in the client than a
#: pipeline of both: about 130 against 220 us of CPU).
GROUP_ADD = _Script(
    """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""
)
#: KEYS: the members' message sorted sets; ARGV: a message per key, a capacity per key, then
#: messages added before this expired, now, the keys' expiry (seconds). A key may come more than
#: once (several groups or batches to one channel): its messages keep their order. Returns how
#: many were at capacity (their message dropped), as channels_redis's script does.
SEND_TO_MEMBERS = _Script(
    """
local n = #KEYS
local expired_before = ARGV[2 * n + 1]
local now = tonumber(ARGV[2 * n + 2])
local expiry = ARGV[2 * n + 3]
local over_capacity = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, expired_before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        -- a microsecond apart: a key's messages of one call are popped in order
        redis.call('ZADD', KEYS[i], now + (i - 1) * 0.000001, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""
)


#: KEYS: groups' sorted sets; ARGV: members added before this expired, messages added before
#: this expired, now, the channels' expiry, their capacity, the layer's prefix, the msgpack of
#: '__asgi_channel__', then per group: '1' when it closes, the head of its message (the random
#: prefix and the map's header, one entry more than the body holds) and its body. Each Redis key's
#: message is put together here as channels_redis's `_map_channel_keys_to_connection` makes it
#: (the member channels of that key in `__asgi_channel__`). Returns how many were at capacity,
#: then the index (from 1) of each group that had members.
SEND_TO_GROUPS = _Script(
    """
local function str(s)
    local n = #s
    if n < 32 then return string.char(0xa0 + n) .. s end
    if n < 256 then return string.char(0xd9, n) .. s end
    return string.char(0xda, math.floor(n / 256), n % 256) .. s
end
local function array(n)
    if n < 16 then return string.char(0x90 + n) end
    return string.char(0xdc, math.floor(n / 256), n % 256)
end
local now = tonumber(ARGV[3])
local capacity = tonumber(ARGV[5])
local over_capacity, sent = 0, 0
local result = {0}
for i = 1, #KEYS do
    local base = 8 + (i - 1) * 3
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    local members = redis.call('ZRANGE', KEYS[i], 0, -1)
    if ARGV[base] == '1' then
        redis.call('DEL', KEYS[i])
    end
    if #members > 0 then
        result[#result + 1] = i
        local keys, channels_of = {}, {}
        for _, member in ipairs(members) do
            local bang = string.find(member, '!', 1, true)
            local key = ARGV[6] .. (bang and string.sub(member, 1, bang) or member)
            if channels_of[key] == nil then
                channels_of[key] = {}
                keys[#keys + 1] = key
            end
            table.insert(channels_of[key], member)
        end
        for _, key in ipairs(keys) do
            local channels = channels_of[key]
            local parts = {ARGV[base + 1], ARGV[base + 2], ARGV[7], array(#channels)}
            for _, channel in ipairs(channels) do
                parts[#parts + 1] = str(channel)
            end
            redis.call('ZREMRANGEBYSCORE', key, 0, ARGV[2])
            if redis.call('ZCOUNT', key, '-inf', '+inf') < capacity then
                -- a microsecond apart: a key's messages of one call are popped in order
                redis.call('ZADD', key, now + sent * 0.000001, table.concat(parts))
                redis.call('EXPIRE', key, ARGV[4])
            else
                over_capacity = over_capacity + 1
            end
            sent = sent + 1
        end
    end
end
result[1] = over_capacity
return result
"""
)
#: The msgpack of channels_redis's key for a message's channels.
ASGI_CHANNEL_KEY = msgpack.packb("__asgi_channel__")


class RedisChannelLayer(ChannelsRedisChannelLayer):
    """channels_redis's layer; `group_send` (and `group_send_many`) in one or two round trips,
    `group_add` in one, a receive on a process-local channel in one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Process-local channel key -> its pop in flight (left by a cancelled receive).
        self._pops: dict[str, asyncio.Task[Any]] = {}
        serializer = self._serializer
        #: Whether a group's messages can be put together in Redis (`SEND_TO_GROUPS`): plain
        #: msgpack (not encrypted), one capacity for every channel, one Redis host.
        self._sends_in_one_trip = (
            isinstance(serializer, MsgPackSerializer)
            and serializer.crypter is None
            and not self.channel_capacity
            and self.ring_size == 1
        )

    async def receive_single(self, channel: str) -> tuple[Any, dict[str, Any]]:
        """The next message on `channel` and the channel(s) it is for (channels_redis's
        `__asgi_channel__`); a process-local channel's without a backup (see the module)."""
        if "!" not in channel:
            return await super().receive_single(channel)
        assert self.require_valid_channel_name(channel, receive=True), "Channel name invalid"
        key = self.prefix + channel
        index = self.consistent_hash(channel)
        member = None
        while member is None:
            popped = await self._pop(index, key)
            if popped is not None:
                member = popped[1]
        message = self.deserialize(member)
        return message.pop("__asgi_channel__", channel), message

    async def _pop(self, index: int, key: str) -> Any:
        """BZPOPMIN's answer for `key` (None after `brpop_timeout` seconds), from a task that a
        cancelled caller leaves running for the next receive (which takes its message)."""
        loop = asyncio.get_running_loop()
        pop = self._pops.get(key)
        if pop is not None and (pop.cancelled() or (pop.get_loop() is not loop and not pop.done())):
            pop = None  # cancelled with its event loop, or of a closed loop: it popped nothing
        if pop is None:
            connection = self.connection(index)
            pop = loop.create_task(connection.bzpopmin(key, timeout=self.brpop_timeout))
            self._pops[key] = pop
        try:
            return await asyncio.shield(pop)
        finally:
            if pop.done() and self._pops.get(key) is pop:
                del self._pops[key]

    async def mark_alive(self, channel: str) -> bool:
        """Leave a key of `channel` on Redis (for `group_expiry` seconds); whether it was
        missing: the first call, or Redis lost its data since the last one (restarted without
        it, flushed), and with it the channel's group memberships."""
        key = f"{self.prefix}:alive:{channel}"
        connection = self.connection(self.consistent_hash(channel))
        return bool(await connection.set(key, 1, nx=True, ex=self.group_expiry))

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        connection = self.connection(self.consistent_hash(group))
        await GROUP_ADD.run(
            connection, [self._group_key(group)], [channel, time.time(), self.group_expiry]
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.group_send_many([(group, message)])

    async def group_send_many(
        self,
        sends: list[tuple[str, dict[str, Any] | Callable[[], dict[str, Any]]]],
        *,
        closing: frozenset[str] = frozenset(),
    ) -> set[str]:
        """`group_send(group, message)` for each pair, in order, in two round trips for all
        (one when no group has members, or when no message is a callable and the layer's
        messages can be put together in Redis). A message may be a callable that makes it: it
        is called only when its group has members. The groups in `closing` get their last message:
        they are deleted as their members are read (so a member need not be discarded; one
        added later is in a new group). Returns the groups that had members (with several Redis
        hosts, all of them: channels_redis's send does not say)."""
        if self.ring_size != 1:
            for group, message in sends:
                await super().group_send(group, message() if callable(message) else message)
            for group in closing:
                await self.connection(self.consistent_hash(group)).delete(self._group_key(group))
            return {group for group, _ in sends}
        for group, _ in sends:
            assert self.require_valid_group_name(group), "Group name not valid"
        connection = self.connection(0)
        if self._sends_in_one_trip and not any(callable(message) for _, message in sends):
            return await self._send_in_one_trip(connection, sends, closing)  # type: ignore[arg-type]
        last = {group: i for i, (group, _) in enumerate(sends) if group in closing}
        found = await GROUPS_MEMBERS.run(
            connection,
            [self._group_key(group) for group, _ in sends],
            [
                int(time.time()) - self.group_expiry,
                *("1" if last.get(group) == i else "0" for i, (group, _) in enumerate(sends)),
            ],
        )
        keys: list[str] = []
        messages: list[bytes] = []
        capacities: list[int] = []
        heard: set[str] = set()
        for (group, message), members in zip(sends, found, strict=True):
            if not members:
                continue
            heard.add(group)
            if callable(message):
                message = message()
            channel_names = [member.decode("utf8") for member in members]
            by_connection, serialized, capacity = self._map_channel_keys_to_connection(
                channel_names, message
            )
            for key in by_connection[0]:
                keys.append(key)
                messages.append(serialized[key])
                capacities.append(capacity[key])
        if not keys:
            return heard
        args = [
            *messages,
            *capacities,
            int(time.time()) - int(self.expiry),
            time.time(),
            self.expiry,
        ]
        over_capacity = await SEND_TO_MEMBERS.run(connection, keys, args)
        if over_capacity > 0:
            logger.info(
                "%s of %s channels over capacity in groups %s",
                over_capacity,
                len(keys),
                ", ".join(group for group, _ in sends),
            )
        return heard

    async def _send_in_one_trip(
        self, connection: Any, sends: list[tuple[str, dict[str, Any]]], closing: frozenset[str]
    ) -> set[str]:
        """`group_send_many` of messages made beforehand, in one round trip (`SEND_TO_GROUPS`)."""
        last = {group: i for i, (group, _) in enumerate(sends) if group in closing}
        per_send: list[Any] = []
        for i, (group, message) in enumerate(sends):
            head, body = self._message_parts(message)
            per_send += ["1" if last.get(group) == i else "0", head, body]
        now = time.time()
        found = await SEND_TO_GROUPS.run(
            connection,
            [self._group_key(group) for group, _ in sends],
            [
                int(now) - self.group_expiry,
                int(now) - int(self.expiry),
                now,
                self.expiry,
                self.capacity,
                self.prefix,
                ASGI_CHANNEL_KEY,
                *per_send,
            ],
        )
        if found[0] > 0:
            groups = ", ".join(group for group, _ in sends)
            logger.info("%s channels over capacity in groups %s", found[0], groups)
        return {sends[i - 1][0] for i in found[1:]}

    def _message_parts(self, message: dict[str, Any]) -> tuple[bytes, bytes]:
        """channels_redis's serialisation of `message` with one map entry still to come (its
        `__asgi_channel__`, which `SEND_TO_GROUPS` appends): the random prefix and the map's
        header, and the map's entries."""
        packed = msgpack.packb(message)
        if packed[0] == 0xDE:  # map 16
            entries, start = int.from_bytes(packed[1:3], "big"), 3
        else:  # a fixmap: a channel layer message has at least its type, and fewer than 2**16
            entries, start = packed[0] & 0x0F, 1
        entries += 1
        header = bytes([0x80 | entries]) if entries < 16 else b"\xde" + entries.to_bytes(2, "big")
        size = self._serializer.random_prefix_length
        prefix = random.getrandbits(8 * size).to_bytes(size, "big") if size else b""
        return prefix + header, packed[start:]
