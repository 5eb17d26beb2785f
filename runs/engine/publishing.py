"""Publishing a run's events (`fanout`'s other side): to the subscribers of this process at once,
through their hubs, and to other processes' through the channel layer, only when someone else
listens there.

Whether someone else listens costs a look-up of the groups' members on the layer. A run's
publisher (`streaming.EventPublisher`) looks them up for its first batch; when no other process
listened to the run's stream or its thread's then, its next batches skip the look-up (their
events reach this process's listeners alone) until a subscriber of another process announces
itself: one that joins a running run sends `LISTEN` to the worker executing it, which notes it
(`note_listener`) and answers, and its subscription counts as open once the answer came
(`announce_listener`). A subscriber that joined before the run was claimed is found by the first
look-up, made after the claim. The run's `end` always looks every group up.

A layer that leaves a batch's part unanswered for `bus.SEND_SECONDS` (a hung Redis) is taken as
silent: for SILENT_SECONDS the batches of every run of this process skip it (their events reach
this process's listeners alone, at once), then one batch's part goes as a probe, in the background,
one at a time, while the others still skip; the first probe answered ends the silence. A run's
batches thus wait on a hung Redis once, not each; other processes' streams miss what is skipped
and read the run's end from the database, as for any lost message.
"""

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

from channels.layers import BaseChannelLayer, InMemoryChannelLayer

from runs.engine import bus
from runs.engine.fanout import CLOSED, EVENTS, PROCESS_ID, _Hub, _hub_of_this_loop, _hubs

logger = logging.getLogger(__name__)

#: Events per layer message at most (a batch of the publisher is sent in as few as that allows).
EVENTS_PER_MESSAGE = 100

#: How long after a look-up that found no listener of another process a run's batches skip it
#: (seconds): a subscriber that joined again after Redis lost its groups (a hub's re-join, which
#: announces nothing), or whose announcement was lost, is found within as long.
UNHEARD_SECONDS = 1.0
#: Runs published from this process whose stream groups no other process listened to at their
#: last look-up, and for which no subscriber announced itself since: when that look-up was
#: (`time.monotonic()`); their batches skip it for UNHEARD_SECONDS.
_unheard: dict[str, float] = {}
#: How many subscribers of other processes announced themselves to this process (a look-up in
#: flight while one did may have missed it: its run is then not taken as unheard).
_announced = 0
#: How long announcements to a worker that did not answer one are not waited for (seconds).
UNANSWERED_SECONDS = 30.0
#: Workers that did not answer an announcement within `bus.SEND_SECONDS`: when (monotonic).
_unanswered: dict[str, float] = {}
#: The answers to announcements being sent, held (the loop keeps only a weak reference to a task).
_answering: set["asyncio.Task[None]"] = set()
#: How long after the layer left a batch's part unanswered every batch skips it (seconds).
SILENT_SECONDS = 2.0
#: When the layer last left a batch's part unanswered (`time.monotonic()`), unless a part was
#: answered since: None while the layer answers.
_silent_since: float | None = None
#: The probe of a silent layer in flight (a batch's part, in the background), held.
_probe: "asyncio.Task[None] | None" = None


def forget_run(run_id: UUID | str) -> None:
    """The run's publisher starts or stops: its next batch (if any) looks its groups up."""
    _unheard.pop(str(run_id), None)


def note_listener(message: dict[str, Any]) -> None:
    """A `bus.LISTEN` came (to the worker executing the run): the run's next batches look their
    groups' members up, and the announcing subscriber is answered (in the background)."""
    global _announced
    _announced += 1
    _unheard.pop(str(message.get("run_id")), None)
    reply_to = message.get("reply_to")
    if isinstance(reply_to, str) and reply_to:
        answer = {"type": bus.LISTENING, "token": message.get("token")}
        task = asyncio.get_running_loop().create_task(
            bus.send_within_bound(
                bus.layer().send,
                {"channel": reply_to, "message": answer},
                failure=f"cannot answer a stream's listener on {reply_to}",
            ),
            name="listening",
        )
        _answering.add(task)
        task.add_done_callback(_answering.discard)


async def announce_listener(*, run_id: UUID | str, worker_id: str) -> None:
    """Tell the worker `worker_id`, executing the run, that a subscription of this process (to
    the run's stream or its thread's, opened before this) listens, and wait for its answer: from
    then on every batch of the run looks its groups up, and reaches the subscription. Nothing
    when the layer reaches no other process. A worker that does not answer within
    `bus.SEND_SECONDS` (gone, hung, or too old to know the message) is logged and not waited for:
    as for any lost bus message, the stream then hears the run's end from the database; for
    UNANSWERED_SECONDS after that, its announcements are sent without waiting for an answer.

    The answer comes to this loop's hub's channel (`fanout._Hub.answers`), with the token the
    announcement named: one that comes after the wait was given up is dropped there, so none
    stays behind in the layer's receive buffer."""
    hub = _hub_of_this_loop()
    if hub.layer is None or not worker_id:
        return
    now = time.monotonic()
    since = _unanswered.get(worker_id)
    waits = since is None or now - since >= UNANSWERED_SECONDS
    token = uuid.uuid4().hex
    answered: asyncio.Future[None] = hub.loop.create_future()
    if waits:  # (else its answer, if any, is dropped by the hub)
        hub.answers[token] = answered
    try:
        async with bus.bounded():
            message = {"type": bus.LISTEN, "run_id": str(run_id), "token": token}
            message["reply_to"] = await hub.listening_channel()
            await hub.layer.group_send(bus.worker_control_group(worker_id), message)
            if waits:
                await answered
    except Exception:
        for old in [worker for worker, at in _unanswered.items() if now - at > UNANSWERED_SECONDS]:
            del _unanswered[old]
        _unanswered[worker_id] = now
        logger.warning(
            "run %s: worker %s did not answer a stream's listener", run_id, worker_id, exc_info=True
        )
    finally:
        hub.answers.pop(token, None)


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
    publisher: bool = False,
) -> None:
    """Fan a run's events out, in order, to the listeners of the run and of its thread, and its
    `end` to those of `bus.run_end_group`: this process's at once, other processes' through the
    layer (when it reaches them and they listen). `answer` makes the run's final answer
    (`answers.layer_answer`), called only when another process waits for the run's end, whose
    `end` then brings it. `publisher`: the run's own publisher calls, whose batches skip the
    layer while no other process listens (see the module). A failure of the layer is logged
    per event: the bus is not the record. The layer's part (look-ups and sends) is given up
    after `bus.SEND_SECONDS` in all (a hung Redis, logged), and skipped or probed without a wait
    while the layer is silent (see the module): a run's end is never held up by the bus, whose
    other processes' streams then read the run's end from the database."""
    messages, listened_here = _deliver_here(run_id, thread_id, events)
    channel_layer = bus.layer()
    if isinstance(channel_layer, InMemoryChannelLayer) or not messages:
        return
    end = next((message for message in messages if message["event"] == bus.END), None)
    key = str(run_id)
    unheard_since = _unheard.get(key)
    if publisher and end is None and unheard_since is not None:
        if time.monotonic() - unheard_since < UNHEARD_SECONDS:
            return  # no other process listened at the last look-up, and none announced itself
    part = functools.partial(
        _publish_on_layer,
        channel_layer,
        messages,
        listened_here,
        end,
        run_id,
        thread_id,
        answer,
        publisher,
    )
    forgets = end is not None or not publisher  # the run's `_unheard` when the layer is silent
    if _silent_since is None:
        await _publish_within_bound(part, run_id=run_id, forgets=forgets)
        return
    # A silent layer (see the module): skipped, or probed without waiting.
    if forgets:
        _unheard.pop(key, None)
    global _probe
    if (_probe is None or _probe.done()) and time.monotonic() - _silent_since >= SILENT_SECONDS:
        _probe = asyncio.get_running_loop().create_task(
            _publish_within_bound(part, run_id=run_id, forgets=forgets),
            name=f"layer-probe-{run_id}",
        )


async def _publish_within_bound(
    publish: Callable[[], Awaitable[None]], *, run_id: UUID | str, forgets: bool
) -> None:
    """`await publish()` (`_publish_on_layer`) given up after `bus.SEND_SECONDS`, which makes
    the layer silent (see the module); answered in time, it ends a silence. `forgets`: the
    run's `_unheard` is dropped when it is given up."""
    global _silent_since
    try:
        async with bus.bounded():
            await publish()
    except TimeoutError:
        # A hung Redis: these events reach this process's listeners alone (delivered before);
        # other processes' streams hear the run's end from the database, as for any lost
        # message. The run's record is the truth, and its end is not held up any longer.
        if _silent_since is None:
            logger.warning(
                "run %s: the channel layer has not answered within %s s: events are not "
                "published to other processes until it answers again",
                run_id,
                bus.SEND_SECONDS,
            )
        _silent_since = time.monotonic()
        if forgets:
            _unheard.pop(str(run_id), None)
    else:
        if _silent_since is not None:
            logger.warning("the channel layer answers again: events are published to it")
        _silent_since = None


async def _publish_on_layer(
    channel_layer: BaseChannelLayer,
    messages: list[dict[str, Any]],
    listened_here: set[str],
    end: dict[str, Any] | None,
    run_id: UUID | str,
    thread_id: str,
    answer: Callable[[], bytes | None] | None,
    publisher: bool,
) -> None:
    """`publish_events`' part on the layer: the groups' look-ups, then the sends (unbounded:
    the caller bounds the whole)."""
    key = str(run_id)
    announced, looked_up = _announced, time.monotonic()
    hub = _hub_of_this_loop()
    sends: list[tuple[str, Any]] = []
    stream_groups = (bus.run_stream_group(run_id), bus.thread_stream_group(thread_id))
    known = True  # whether `heard` below knows every group's members
    for group in stream_groups:
        others = await _others_may_listen(hub, group, listened_here, run_id)
        known = known and others is not None
        if others:
            # One layer message per batch: the layer's cost is per message, not per event.
            for start in range(0, len(messages), EVENTS_PER_MESSAGE):
                batch = messages[start : start + EVENTS_PER_MESSAGE]
                sends.append((group, _events_message(group, batch)))
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
    heard = await _send_to_groups(channel_layer, sends, run_id=run_id, closing=closing)
    if end is not None or not publisher:
        _unheard.pop(key, None)
    elif known and heard is not None and not heard & set(stream_groups) and announced == _announced:
        _unheard[key] = looked_up


def _events_message(
    group: str, events: list[dict[str, Any]], *, closed: bool = False
) -> dict[str, Any]:
    """A layer message of `events` for `group`'s listeners; `closed`: the group's last one (its
    publisher closed the group on the layer)."""
    message = {"type": EVENTS, "group": group, "origin": PROCESS_ID, "events": events}
    if closed:
        message[CLOSED] = True
    return message


async def _others_may_listen(
    hub: _Hub, group: str, listened_here: set[str], run_id: Any
) -> bool | None:
    """Whether to send to `group` on the layer: not when only this process listens there (a
    group without listeners here: the layer's send looks its members up anyway); None when the
    layer failed to say (logged)."""
    try:
        return group not in listened_here or await _others_listen(hub, group)
    except Exception:
        logger.exception("run %s: cannot publish events to %s", run_id, group)
        return None


async def _others_listen(hub: _Hub, group: str) -> bool:
    """Whether a channel other than this process's listeners is in `group` on the layer
    (channels_redis's sorted set of its channels; a layer without one: True). Unbounded: its
    caller, `publish_events`, bounds the layer's whole part of a batch (`bus.bounded`)."""
    layer: Any = hub.layer
    group_key = getattr(layer, "_group_key", None)
    if group_key is None:
        return True
    members = await layer.connection(layer.consistent_hash(group)).zrange(group_key(group), 0, -1)
    own = {hub.channel for hub in list(_hubs.values())}
    return any(member.decode() not in own for member in members)


async def _send_to_groups(
    channel_layer: BaseChannelLayer,
    sends: list[tuple[str, Any]],
    *,
    run_id: Any,
    closing: frozenset[str] = frozenset(),
) -> set[str] | None:
    """Each (group, message) through the layer, in order: all at once when the layer can
    (`redis_layer.RedisChannelLayer.group_send_many`, which closes the groups in `closing`
    after their message); failures logged. A message may be a callable that makes it, called
    only for a group that has members. Returns the groups that had members, when the layer
    says (else None)."""
    if not sends:
        return set()
    send_many = getattr(channel_layer, "group_send_many", None)
    if send_many is not None:
        try:
            return await send_many(sends, closing=closing)
        except Exception:
            groups = ", ".join(dict.fromkeys(group for group, _ in sends))
            logger.exception("run %s: cannot publish events to %s", run_id, groups)
        return None
    for group, message in sends:
        try:
            await channel_layer.group_send(group, message() if callable(message) else message)
        except Exception:
            logger.exception("run %s: cannot publish events to %s", run_id, group)
    return None
