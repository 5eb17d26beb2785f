"""The Redis channel layer: channels_redis's, with a group's send and add and a receive in
fewer round trips.

channels_redis sends to a group in four round trips to Redis (drop the group's expired members,
read the members, drop the members' expired messages, a script that adds the message to each
member under its capacity) and adds to a group in two (ZADD, EXPIRE). Every run pays several
group sends (the queue's wake-up, each batch of its events to two groups), so this layer does
the same work in two round trips for a send (a script that drops the expired members and reads
the rest; a script that drops expired messages and adds the message), also for a send to several
groups at once (`group_send_many`: a batch of a run's events to its run's group and its
thread's), and one for an add (both commands in one pipeline). The keys, the values, the
expiries and the capacities are channels_redis's own: processes with either layer understand
each other. With several Redis hosts (sharding) a group's members may live on other hosts than
the group, so channels_redis's own send is used.

A receive of channels_redis takes a message in four round trips: a script that puts back what an
interrupted receive left in the channel's backup queue, the blocking pop, the copy into the
backup, and the backup's clean-up once the message is handed over. When this process's last
receive on the channel ended with its clean-up done (or with nothing popped), the backup is
empty (a channel key is this process's own, and its receives run one at a time), so the put-back
script is skipped; after anything else (the first receive, a cancelled one, a failed clean-up)
it runs as before.
"""

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from channels_redis.core import RedisChannelLayer as ChannelsRedisChannelLayer
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


#: KEYS: groups' sorted sets; ARGV[1]: members added before this (epoch seconds) expired.
#: Returns the members of each group.
GROUPS_MEMBERS = _Script(
    """
local members = {}
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    members[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
return members
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


class RedisChannelLayer(ChannelsRedisChannelLayer):
    """channels_redis's layer; `group_send` (and `group_send_many`) in two round trips,
    `group_add` in one, a receive in three."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Channel keys whose backup queue this process knows to be empty.
        self._empty_backups: set[str] = set()

    async def _brpop_with_clean(
        self,
        index: int,
        channel: str,
        timeout: float,  # noqa: ASYNC109 - channels_redis's signature
    ) -> Any:
        if channel not in self._empty_backups:
            member = await super()._brpop_with_clean(index, channel, timeout)
        else:
            self._empty_backups.discard(channel)  # until this receive is over
            connection = self.connection(index)
            popped = await connection.bzpopmin(channel, timeout=timeout)
            member = None
            if popped is not None:
                _, member, score = popped
                await connection.zadd(self._backup_channel_name(channel), {member: float(score)})
        if member is None:  # nothing popped: the backup is as the put-back left it, empty
            self._empty_backups.add(channel)
        return member

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        await super()._clean_receive_backup(index, channel)
        self._empty_backups.add(channel)

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {channel: time.time()})
            pipe.expire(key, self.group_expiry)
            await pipe.execute()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.group_send_many([(group, message)])

    async def group_send_many(
        self, sends: list[tuple[str, dict[str, Any] | Callable[[], dict[str, Any]]]]
    ) -> None:
        """`group_send(group, message)` for each pair, in order, in two round trips for all
        (one when no group has members). A message may be a callable that makes it: it is
        called only when its group has members."""
        if self.ring_size != 1:
            for group, message in sends:
                await super().group_send(group, message() if callable(message) else message)
            return
        for group, _ in sends:
            assert self.require_valid_group_name(group), "Group name not valid"
        connection = self.connection(0)
        found = await GROUPS_MEMBERS.run(
            connection,
            [self._group_key(group) for group, _ in sends],
            [int(time.time()) - self.group_expiry],
        )
        keys: list[str] = []
        messages: list[bytes] = []
        capacities: list[int] = []
        for (_, message), members in zip(sends, found, strict=True):
            if not members:
                continue
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
            return
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
