"""Publishing a run's events (`fanout`'s other side): to the subscribers of this process at once,
through their hubs, and to other processes' through the channel layer, only when someone else
listens there.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from channels.layers import BaseChannelLayer, InMemoryChannelLayer

from runs.engine import bus
from runs.engine.fanout import CLOSED, EVENTS, PROCESS_ID, _Hub, _hub_of_this_loop, _hubs

logger = logging.getLogger(__name__)

#: Events per layer message at most (a batch of the publisher is sent in as few as that allows).
EVENTS_PER_MESSAGE = 100


def _deliver_locally(group: str, message: dict[str, Any]) -> bool:
    """Hand a message to the subscribers of `group` on every event loop of this process (on
    another loop, through that loop's thread-safe call); whether this loop's hub has any."""
    running = asyncio.get_running_loop()
    hub = _hubs.get(running)
    if hub is not None:
        hub.deliver(group, message)
    if len(_hubs) > (hub is not None):  # subscribers on another loop (another thread)
        for loop, other in list(_hubs.items()):
            if loop is not running and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(other.deliver, group, message)
                except RuntimeError:  # closed meanwhile
                    pass
    return hub is not None and group in hub.subscribers


def listened_here(*, run_id: UUID | str, thread_id: str) -> bool:
    """Whether a subscriber of this process (on any of its event loops) listens to the run's
    stream or its thread's (the run's `end`'s own group aside)."""
    groups = (bus.run_stream_group(run_id), bus.thread_stream_group(thread_id))
    return any(group in hub.subscribers for hub in list(_hubs.values()) for group in groups)


def publish_events_here(
    *, run_id: UUID | str, thread_id: str, events: Iterable[bus.StreamEvent]
) -> bool:
    """`publish_events` without a wait, when the channel layer reaches no other process (the
    in-memory one): the events go to this process's listeners now, and True; else nothing is
    done, and False."""
    if not isinstance(bus.layer(), InMemoryChannelLayer):
        return False
    _deliver_here(run_id, thread_id, events)
    return True


def _deliver_here(
    run_id: UUID | str, thread_id: str, events: Iterable[bus.StreamEvent]
) -> tuple[list[dict[str, Any]], set[str]]:
    """The events to this process's listeners of the run and of its thread, in order, and an
    `end` to those of the run's end too; returns their messages and the groups with listeners
    on this loop."""
    groups = (bus.run_stream_group(run_id), bus.thread_stream_group(thread_id))
    with_end = (*groups, bus.run_end_group(run_id))
    messages = [event.as_message(run_id) for event in events]
    listened_here = set()
    for message in messages:
        for group in with_end if message["event"] == bus.END else groups:
            if _deliver_locally(group, message):
                listened_here.add(group)
    return messages, listened_here


async def publish_events(
    *,
    run_id: UUID | str,
    thread_id: str,
    events: Iterable[bus.StreamEvent],
    answer: Callable[[], bytes | None] | None = None,
) -> None:
    """Fan a run's events out, in order, to the listeners of the run and of its thread, and its
    `end` to those of `bus.run_end_group`: this process's at once, other processes' through the
    layer (when it reaches them and they listen). `answer` makes the run's final answer
    (`answers.layer_answer`), called only when another process waits for the run's end, whose
    `end` then brings it. A failure of the layer is logged per event: the bus is not the
    record."""
    messages, listened_here = _deliver_here(run_id, thread_id, events)
    channel_layer = bus.layer()
    if isinstance(channel_layer, InMemoryChannelLayer) or not messages:
        return
    hub = _hub_of_this_loop()
    sends: list[tuple[str, Any]] = []
    for group in (bus.run_stream_group(run_id), bus.thread_stream_group(thread_id)):
        if await _others_may_listen(hub, group, listened_here, run_id):
            # One layer message per batch: the layer's cost is per message, not per event.
            for start in range(0, len(messages), EVENTS_PER_MESSAGE):
                batch = messages[start : start + EVENTS_PER_MESSAGE]
                sends.append((group, _events_message(group, batch)))
    end = next((message for message in messages if message["event"] == bus.END), None)
    end_group = bus.run_end_group(run_id)
    closing: frozenset[str] = frozenset()
    if end is not None and await _others_may_listen(hub, end_group, listened_here, run_id):
        # The end is the group's last message: a layer that can closes the group with it, and
        # says so, so that its listeners need not leave it (`fanout._Hub`).
        closes = getattr(channel_layer, "group_send_many", None) is not None
        closing = frozenset({end_group}) if closes else closing

        def end_message() -> dict[str, Any]:
            body = answer() if answer is not None else None
            end_event = end if body is None else {**end, "answer": body}
            return _events_message(end_group, [end_event], closed=closes)

        sends.append((end_group, end_message))  # made only when the group has members
    await _send_to_groups(channel_layer, sends, run_id=run_id, closing=closing)


def _events_message(
    group: str, events: list[dict[str, Any]], *, closed: bool = False
) -> dict[str, Any]:
    """A layer message of `events` for `group`'s listeners; `closed`: the group's last one (its
    publisher closed the group on the layer)."""
    message = {"type": EVENTS, "group": group, "origin": PROCESS_ID, "events": events}
    if closed:
        message[CLOSED] = True
    return message


async def _others_may_listen(hub: _Hub, group: str, listened_here: set[str], run_id: Any) -> bool:
    """Whether to send to `group` on the layer: not when only this process listens there (a
    group without listeners here: the layer's send looks its members up anyway)."""
    try:
        return group not in listened_here or await hub.others_listen(group)
    except Exception:
        logger.exception("run %s: cannot publish events to %s", run_id, group)
        return False


async def _send_to_groups(
    channel_layer: BaseChannelLayer,
    sends: list[tuple[str, Any]],
    *,
    run_id: Any,
    closing: frozenset[str] = frozenset(),
) -> None:
    """Each (group, message) through the layer, in order: all at once when the layer can
    (`redis_layer.RedisChannelLayer.group_send_many`, which closes the groups in `closing`
    after their message); failures logged. A message may be a callable that makes it, called
    only for a group that has members."""
    send_many = getattr(channel_layer, "group_send_many", None)
    if send_many is not None and sends:
        try:
            await send_many(sends, closing=closing)
        except Exception:
            groups = ", ".join(dict.fromkeys(group for group, _ in sends))
            logger.exception("run %s: cannot publish events to %s", run_id, groups)
        return
    for group, message in sends:
        try:
            await channel_layer.group_send(group, message() if callable(message) else message)
        except Exception:
            logger.exception("run %s: cannot publish events to %s", run_id, group)
