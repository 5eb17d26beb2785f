"""Local fan-out: stream events reach this process's subscribers directly, and other processes'
through the channel layer.

A `Subscription` registers by group (`bus.run_stream_group`, `bus.thread_stream_group`) with the
hub of the event loop it waits on. `publishing.publish_events` hands each message, the same
dict, to the local subscribers of its groups at once: no copy, no serialisation, no round trip
through the layer, and no task or layer channel per subscriber.

The in-memory channel layer reaches no other process, so stream events never go through it.
A layer that does (Redis) carries the messages too, a publisher's batch in one layer message
(`EVENTS`) marked with its group and this process's id (`origin`), but only when someone else
listens: for a group that has subscribers here (so this process's channel is in it), the
group's members are looked up first, and the message is sent only when another process's
channel is among them. Each hub listens on the layer through
one channel of its own, joined to the groups its subscribers want, hands what arrives to them,
and drops what its own process sent: a local subscriber gets each event once.
"""

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from django.conf import settings

from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus
from runs.engine.heartbeat_clock import HeartbeatClock

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Marks this process's messages on the layer, so that its hubs drop their own copies.
PROCESS_ID = uuid.uuid4().hex
#: How often a hub re-joins its groups on the layer (Redis forgets memberships after a day).
GROUP_REFRESH_SECONDS = 600.0
#: How often a hub looks whether Redis lost its groups (restarted without its data), to join
#: them again: until then, its streams hear nothing from other processes.
LAYER_CHECK_SECONDS = 2.0
#: The pause after the layer failed a receive, before the next one (seconds).
RECEIVE_RETRY_SECONDS = 1.0
#: How long `stop_listening` waits for a listener to read its stop message (seconds).
STOP_SECONDS = 10.0
#: The message that ends a hub's listener (a cancelled channels_redis receive can swallow the
#: cancellation, so a listener is asked to stop instead).
STOP = "fanout.stop"
#: The type of a layer message that carries a run's events to other processes, in order.
EVENTS = "fanout.events"
#: In an EVENTS message: its group's last one, the group closed on the layer by its publisher
#: (a run's end group with its `end`), so its listeners are out of it without leaving.
CLOSED = "closed"


#: Opens given up on (`Subscription.open_if_reachable`), held until their clean-up ends.
_given_up: set["asyncio.Future[Any]"] = set()


def _give_up(opening: "asyncio.Future[Subscription]") -> None:
    """Cancel an open nobody waits for any more, without waiting for its clean-up."""
    opening.cancel()
    _given_up.add(opening)
    opening.add_done_callback(_given_up.discard)
    opening.add_done_callback(_retrieved)


def _retrieved(opening: "asyncio.Future[Subscription]") -> None:
    if not opening.cancelled() and opening.exception() is None:
        # It was opened before the cancel reached it: close it (in the background too).
        subscription = opening.result()
        task = asyncio.ensure_future(subscription.close())
        _given_up.add(task)
        task.add_done_callback(_given_up.discard)
    elif not opening.cancelled():
        logger.debug("a given-up subscription failed", exc_info=opening.exception())


class Subscription:
    """A listener to some groups. Messages wait in its inbox, in order, until `receive` takes
    them; past CHANNEL_CAPACITY waiting, newer ones are dropped (as the channel layer does), so
    a slow client never stalls a run."""

    __slots__ = ("_hub", "_inbox", "_waiter", "groups")

    def __init__(self, hub: "_Hub", groups: tuple[str, ...]) -> None:
        self.groups = groups
        self._hub = hub
        self._inbox: deque[dict[str, Any]] | None = None  # made at the first message
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, *groups: str) -> "Subscription":
        """Subscribed to `groups` once it returns: whatever is published afterwards, in this
        process or another, reaches it (a wait subscribes to `bus.run_end_group`: the run's
        other events wake it not). Raises what the layer raises (Redis unreachable), or
        `bus.LayerUnanswered` when the layer has not answered within `bus.SEND_SECONDS` (a hung
        Redis, which takes connections and answers nothing): the open is then given up on, and
        cancelled in the background (its groups left there), as when its caller is cancelled."""
        hub = _hub_of_this_loop()
        subscription = cls(hub, groups)
        if hub.layer is None:  # nothing to wait for: registered at once
            await hub.add(subscription)
            return subscription
        opening = asyncio.ensure_future(hub.added(subscription))
        try:
            await asyncio.wait({opening}, timeout=bus.SEND_SECONDS)
        except asyncio.CancelledError:
            _give_up(opening)
            raise
        if not opening.done():
            _give_up(opening)
            raise bus.LayerUnanswered(
                f"the channel layer has not answered within {bus.SEND_SECONDS} s"
            )
        return opening.result()

    @classmethod
    async def open_if_reachable(cls, *groups: str) -> "Subscription | None":
        """`open`, or None when the layer fails or has not answered within `bus.SEND_SECONDS`
        (logged): for a caller that can do without the messages, reading the database instead
        (a cancel's wait)."""
        try:
            return await cls.open(*groups)
        except Exception:
            logger.warning("channel layer unavailable: not listening to %s", groups, exc_info=True)
            return None

    def deliver(self, message: dict[str, Any]) -> None:
        """Put a message in the inbox (on the subscription's event loop)."""
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        elif len(inbox) >= settings.CHANNEL_CAPACITY:
            return
        inbox.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self, within: float) -> dict[str, Any] | None:
        """The next message, or None after `within` seconds (up to the heartbeat clock's tick
        later: the waits of all subscriptions of the loop share its one timer)."""
        if not self._inbox:
            if within <= 0:
                return None
            hub = self._hub
            waiter = self._waiter = hub.loop.create_future()
            tick = hub.clock.wake_at(hub.loop.time() + within, waiter)
            try:
                await waiter
            finally:
                hub.clock.forget(tick, waiter)
                self._waiter = None
            if not self._inbox:
                return None
        return self._inbox.popleft()  # type: ignore[union-attr]

    async def close(self) -> None:
        """Stop listening (twice is harmless), whatever happens to the caller (`_Hub.remove`)."""
        await self._hub.remove(self)


class _Membership:
    """Whether a hub's listening channel is in a group on the layer (changed under the lock)."""

    __slots__ = ("added", "closed", "joined", "lock")

    def __init__(self) -> None:
        self.joined = False  # an add was made (it may have reached the layer): leave undoes it
        self.added = False  # the layer answered the add: the channel is in the group
        self.closed = False  # the group's last message came (CLOSED): the layer dropped it
        self.lock = asyncio.Lock()


class _Hub:
    """The subscribers of one event loop by group and, when the layer reaches other processes,
    the one channel through which they hear those processes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, channel_layer: BaseChannelLayer) -> None:
        self.loop = loop
        self.clock = HeartbeatClock(loop)
        self.subscribers: dict[str, set[Subscription]] = {}
        remote = not isinstance(channel_layer, InMemoryChannelLayer)
        self.layer: BaseChannelLayer | None = channel_layer if remote else None
        self.channel = ""
        #: Announcements (`publishing.announce_listener`) awaiting their answer, by token.
        self.answers: dict[str, asyncio.Future[None]] = {}
        self._memberships: dict[str, _Membership] = {}
        self._listener: asyncio.Task[None] | None = None
        #: Messages of this process that came back through the layer (and were dropped).
        self.own_copies_dropped = 0
        self._refresher: asyncio.Task[None] | None = None
        self.leaving: set[asyncio.Task[None]] = set()  # `remove`'s tasks, held (weak in loop)

    def deliver(self, group: str, message: dict[str, Any]) -> None:
        for subscription in self.subscribers.get(group, ()):
            subscription.deliver(message)

    async def add(self, subscription: Subscription) -> None:
        for group in subscription.groups:
            self.subscribers.setdefault(group, set()).add(subscription)
        if self.layer is None:
            return
        try:
            for group in subscription.groups:
                await self._join(group)
        except BaseException:
            await self.remove(subscription)
            raise

    async def added(self, subscription: Subscription) -> Subscription:
        """`add`, then the subscription (a task's result, for `Subscription.open`)."""
        await self.add(subscription)
        return subscription

    async def remove(self, subscription: Subscription) -> None:
        """Unregister `subscription` now, then leave on the layer the groups it was the last
        one here in, in a task of the hub's that nobody waits for (a hung layer never holds
        up the caller) and a cancelled caller does not interrupt (a channel left in a group
        draws its events from every process, re-joined for as long as the hub lives)."""
        emptied = []
        for group in subscription.groups:
            members = self.subscribers.get(group)
            if members is None or subscription not in members:
                continue
            members.discard(subscription)
            if not members:
                del self.subscribers[group]
                emptied.append(group)
        if self.layer is None:
            return
        emptied = [group for group in emptied if not self._forget_closed(group)]
        if not emptied:
            return
        leaving = self.loop.create_task(self._leave(*emptied), name="fanout-leave")
        self.leaving.add(leaving)
        leaving.add_done_callback(self.leaving.discard)

    def _forget_closed(self, group: str) -> bool:
        """Forget the membership of a group that no subscriber here wants any more, when its
        publisher closed it on the layer (nothing to leave there); whether it did."""
        membership = self._memberships.get(group)
        if membership is None or not membership.closed or membership.lock.locked():
            return False
        del self._memberships[group]
        return True

    async def _join(self, group: str) -> None:
        membership = self._memberships.get(group)
        if membership is None:
            membership = self._memberships[group] = _Membership()
        async with membership.lock:
            if not membership.added:
                channel = await self.listening_channel()
                # Joined from the add's start: an add cut short may have reached the layer,
                # and `_leave` then discards it (a discard of no member is harmless). Added
                # once the layer answers: after a failed add, the next subscriber adds again.
                membership.joined = True
                await self.layer.group_add(group, channel)  # type: ignore[union-attr]
                membership.added = True

    async def _leave(self, *groups: str) -> None:
        for group in groups:
            membership = self._memberships.get(group)
            if membership is None:
                continue
            async with membership.lock:
                if membership.joined and group not in self.subscribers:
                    membership.joined = membership.added = False
                    try:  # bounded: the lock is the next join's to take
                        async with bus.bounded():
                            await self.layer.group_discard(group, self.channel)  # type: ignore[union-attr]
                    except Exception:  # the layer's own expiry removes it anyway
                        logger.debug("group_discard failed", exc_info=True)
                # Someone may have subscribed meanwhile: then the entry stays theirs.
                if group not in self.subscribers and self._memberships.get(group) is membership:
                    del self._memberships[group]

    async def listening_channel(self) -> str:
        """The hub's channel on the layer, its listener started (the first call makes them)."""
        if not self.channel:
            # The default prefix: channels_redis serialises a process's receives of its
            # `specific.` channels on one lock, which the worker's channel shares.
            channel = await self.layer.new_channel()  # type: ignore[union-attr]
            self.channel = self.channel or channel
        if self._listener is None:
            self._listener = self.loop.create_task(self._listen(), name="fanout-listen")
            self._refresher = self.loop.create_task(self._refresh_groups(), name="fanout-refresh")
        return self.channel

    async def _listen(self) -> None:
        """Hand what other processes publish to this loop's subscribers, until STOP."""
        assert self.layer is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("local fan-out: channel layer receive failed")
                await asyncio.sleep(RECEIVE_RETRY_SECONDS)
                continue
            if message.get("type") == STOP:
                return
            if message.get("origin") == PROCESS_ID:
                self.own_copies_dropped += 1
            elif message.get("type") == bus.LISTENING:  # an answer to an announcement
                answered = self.answers.pop(message.get("token"), None)
                if answered is not None and not answered.done():
                    answered.set_result(None)  # (a late one, unawaited, is dropped here)
            elif message.get("type") == EVENTS:
                group = message.get("group", "")
                if message.get(CLOSED) and (membership := self._memberships.get(group)):
                    membership.closed = True
                for event in message.get("events") or ():
                    self.deliver(group, event)

    async def stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if listener is None or listener.done():
            return
        try:
            await self.layer.send(self.channel, {"type": STOP})  # type: ignore[union-attr]
        except Exception:
            logger.warning("local fan-out: cannot stop the listener", exc_info=True)
        else:
            await asyncio.wait({listener}, timeout=STOP_SECONDS)
        if not listener.done():
            listener.cancel()

    async def _refresh_groups(self) -> None:
        """Re-join the groups every GROUP_REFRESH_SECONDS, and as soon as Redis is found to
        have lost them (`RedisChannelLayer.mark_alive`, every LAYER_CHECK_SECONDS), each call
        given up after `bus.SEND_SECONDS` (a hung Redis): a group's lock is held no longer."""
        assert self.layer is not None
        mark_alive = getattr(self.layer, "mark_alive", None)
        first, lost, last_refresh = True, False, self.loop.time()
        while True:
            try:
                if mark_alive is not None:
                    async with bus.bounded():
                        lost = (await mark_alive(self.channel) and not first) or lost
                    first = False
                if lost or self.loop.time() - last_refresh >= GROUP_REFRESH_SECONDS:
                    last_refresh = self.loop.time()
                    for group, membership in list(self._memberships.items()):
                        async with membership.lock:
                            if membership.joined and not membership.closed:
                                async with bus.bounded():
                                    await self.layer.group_add(group, self.channel)
                    lost = False
            except Exception:  # Redis down: looked at again, and the groups re-joined, later
                logger.warning("local fan-out: cannot re-join the groups", exc_info=True)
            await asyncio.sleep(LAYER_CHECK_SECONDS)


_hubs: dict[asyncio.AbstractEventLoop, _Hub] = {}


def _hub_of_this_loop() -> _Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for closed in [other for other in _hubs if other.is_closed()]:
            del _hubs[closed]
        hub = _hubs[loop] = _Hub(loop, bus.layer())
    return hub


async def subscribe_then(
    group: str, read: Callable[..., T], /, **kwargs: Any
) -> tuple[T, Subscription]:
    """Subscribe to `group`, then run `read(**kwargs)` (ORM code) on the database threads, so that
    nothing published after the read is missed; the subscription is closed if the read fails."""
    subscription = await Subscription.open(group)
    try:
        return await call_sync(read, **kwargs, on=Executor.API), subscription
    except BaseException:
        await subscription.close()
        raise


async def stop_listening() -> None:
    """Stop this event loop's listener on the layer, if any (the end of a process or of a
    test's event loop); a later subscription starts it again."""
    hub = _hubs.get(asyncio.get_running_loop())
    if hub is not None:
        await hub.stop_listening()
