"""Server-sent events of runs: the frame format, bus subscriptions and the stream of one run.

A stream view subscribes to the run's bus group first, then (for create-and-stream) admits the
run, so no event can be published before someone listens. It then replays what is stored after
`Last-Event-ID` (resumable runs), de-duplicates by id and goes live until `end`.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.http import StreamingHttpResponse

from deerflow_site.dbthreads import db
from deerflow_site.logs import run_fields
from runs import selectors
from runs.engine import bus
from runs.models import Run

logger = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT = b": heartbeat\r\n\r\n"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
#: Silent heartbeats between two looks at the run's status in the database (a lost `end`).
HEARTBEATS_PER_STATUS_CHECK = 2
#: Events always delivered, whatever stream modes a join asked for.
CONTROL_EVENTS = frozenset({"metadata", "error", "end", "gap"})
#: The event names each client stream mode produces.
EVENTS_OF_MODE = {
    "messages-tuple": ("messages",),
    "messages": ("messages/partial", "messages/complete", "messages/metadata"),
}
REPLAY_PAGE = 500
#: Ids from here up are the clock-based ones of terminal events published out of band.
OUT_OF_BAND_IDS = 10**12

#: Cancels started by disconnected clients, kept referenced until they finish.
_background: set[asyncio.Task] = set()


def frame(event: str, data: str, event_id: int | str) -> bytes:
    """One SSE event: `data` is one line of JSON."""
    return f"event: {event}\r\ndata: {data}\r\nid: {event_id}\r\n\r\n".encode()


def metadata_frame(*, run_id: str, thread_id: str, attempt: int, event_id: int | str) -> bytes:
    """The `metadata` event a client gets first for each run."""
    payload = {"run_id": run_id, "thread_id": thread_id, "attempt": attempt}
    return frame("metadata", bus.dumps(payload), event_id)


def sse_response(
    stream: AsyncIterator[bytes], *, headers: dict[str, str] | None = None
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    for name, value in {**SSE_HEADERS, **(headers or {})}.items():
        response[name] = value
    return response


def event_filter(modes: Iterable[str] | None) -> frozenset[str] | None:
    """The event names (before any `|namespace`) that the stream modes let through; None: all."""
    if not modes:
        return None
    names = set(CONTROL_EVENTS)
    for mode in modes:
        names.update(EVENTS_OF_MODE.get(mode, (mode,)))
    return frozenset(names)


def wanted(event: str, names: frozenset[str] | None) -> bool:
    return names is None or event.split("|", 1)[0] in names


def spawn(coroutine: Any) -> None:
    """Run a coroutine to completion in the background (a cancel after a disconnect)."""
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


class Subscription:
    """A fresh bus channel in some groups; waiting on it with a timeout loses no message."""

    def __init__(self, channel: str, groups: tuple[str, ...]) -> None:
        self.channel = channel
        self.groups = groups
        self._receiving: asyncio.Future | None = None

    @classmethod
    async def open(cls, *groups: str) -> "Subscription":
        layer = bus.layer()
        channel = await layer.new_channel()
        for group in groups:
            await layer.group_add(group, channel)
        return cls(channel, groups)

    async def receive(self, within: float) -> dict[str, Any] | None:
        """The next message, or None after `within` seconds (the pending read is kept)."""
        if self._receiving is None:
            self._receiving = asyncio.ensure_future(bus.layer().receive(self.channel))
        done, _ = await asyncio.wait({self._receiving}, timeout=max(within, 0))
        if not done:
            return None
        receiving, self._receiving = self._receiving, None
        return receiving.result()

    async def close(self) -> None:
        if self._receiving is not None:
            self._receiving.cancel()
            self._receiving = None
        layer = bus.layer()
        for group in self.groups:
            try:
                await layer.group_discard(group, self.channel)
            except Exception:  # the layer's own expiry removes it anyway
                logger.debug("group_discard failed", exc_info=True)


async def subscribe_then(
    group: str, read: Callable[..., T], /, **kwargs: Any
) -> tuple[T, Subscription]:
    """Subscribe to `group`, then run `read(**kwargs)` (ORM code) on the database threads, so that
    nothing published after the read is missed; the subscription is closed if the read fails."""
    subscription = await Subscription.open(group)
    try:
        return await db(read, **kwargs), subscription
    except BaseException:
        await subscription.close()
        raise


@dataclass
class _Cursor:
    """Where a client is in a run's stream."""

    run_id: UUID
    last_sent: int
    concluded: bool = False  # `end` (or `gap`) was delivered


def _run_status(*, run_id: UUID) -> str | None:
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def _replay_page(*, cursor: _Cursor, names: frozenset[str] | None) -> tuple[list[bytes], bool]:
    """The next page of stored events after the cursor as frames (advancing the cursor), and
    whether more may follow."""
    events = selectors.stored_events_after(
        run_id=cursor.run_id, after=cursor.last_sent, limit=REPLAY_PAGE
    )
    frames = []
    for event in events:
        cursor.last_sent = event.seq
        if wanted(event.event, names):
            frames.append(frame(event.event, event.data, event.seq))
        if event.event == "end":
            cursor.concluded = True
            return frames, False
    return frames, len(events) == REPLAY_PAGE


async def _replay(*, cursor: _Cursor, names: frozenset[str] | None) -> AsyncIterator[bytes]:
    """Every stored event after the cursor, a page at a time."""
    more = True
    while more:
        frames, more = await db(_replay_page, cursor=cursor, names=names)
        for chunk in frames:
            yield chunk


def _gap(*, cursor: _Cursor, run: Run) -> bytes | None:
    """A `gap` frame when events after the cursor were removed by retention cleanup."""
    first = selectors.first_stored_event_id(run_id=run.pk)
    executor_ids_missing = first is not None and cursor.last_sent + 1 < first < OUT_OF_BAND_IDS
    nothing_kept = first is None and not run.is_active
    if not (executor_ids_missing or nothing_kept):
        return None
    detail = {
        "message": "Events after Last-Event-ID are no longer kept.",
        "last_event_id": cursor.last_sent,
        "first_available_id": first,
    }
    cursor.concluded = True
    return frame("gap", bus.dumps(detail), first - 1 if first is not None else cursor.last_sent)


def _end_frame(cursor: _Cursor) -> bytes:
    cursor.concluded = True
    event_id = max(bus.out_of_band_event_id(), cursor.last_sent + 1)
    cursor.last_sent = event_id
    return frame("end", "null", event_id)


async def stream_run_events(
    *,
    subscription: Subscription,
    run: Run,
    last_event_id: int | None = None,
    modes: Iterable[str] | None = None,
    cancel_on_disconnect: bool = False,
) -> AsyncIterator[bytes]:
    """The SSE bytes of one run, from a subscription to its stream group opened beforehand.

    Without `last_event_id`: `metadata`, then live events. With one (resumable runs):
    `metadata`, then the stored events after it (`-1`: all of them), then live ones. A client
    that goes away before the end cancels the run (interrupt) when `cancel_on_disconnect`.
    """
    cursor = _Cursor(run_id=run.pk, last_sent=-1 if last_event_id is None else last_event_id)
    try:
        async for chunk in _run_frames(
            subscription=subscription,
            run=run,
            cursor=cursor,
            replay=last_event_id is not None,
            names=event_filter(modes),
        ):
            yield chunk
    finally:
        await subscription.close()
        if not cursor.concluded and cancel_on_disconnect:
            spawn(cancel_after_disconnect(run_id=run.pk))


async def _run_frames(
    *,
    subscription: Subscription,
    run: Run,
    cursor: _Cursor,
    replay: bool,
    names: frozenset[str] | None,
) -> AsyncIterator[bytes]:
    # `metadata` is id 0 from the start (-1 included). A resumed connection starts with it too,
    # under the id the client resumes after: its cursor does not move, so a reconnect from
    # there loses and repeats nothing.
    cursor.last_sent = max(cursor.last_sent, 0)
    yield metadata_frame(
        run_id=str(run.pk),
        thread_id=run.thread_id,
        attempt=max(run.attempt, 1),
        event_id=cursor.last_sent,
    )
    if replay and run.resumable:
        gap = await db(_gap, cursor=cursor, run=run)
        if gap is not None:
            yield gap
            return
        async for chunk in _replay(cursor=cursor, names=names):
            yield chunk
        if cursor.concluded:
            return
    if not run.is_active:
        # It finished before we listened: its own `end` went out already.
        yield _end_frame(cursor)
        return
    async for chunk in _live_frames(subscription=subscription, cursor=cursor, names=names, run=run):
        yield chunk


async def _live_frames(
    *, subscription: Subscription, cursor: _Cursor, names: frozenset[str] | None, run: Run
) -> AsyncIterator[bytes]:
    heartbeat = settings.SSE_HEARTBEAT_SECONDS
    run_id = str(run.pk)
    last_write = time.monotonic()
    silent_heartbeats = 0
    while True:
        message = await subscription.receive(within=heartbeat - (time.monotonic() - last_write))
        if message is None:
            yield HEARTBEAT
            last_write = time.monotonic()
            silent_heartbeats += 1
            if silent_heartbeats % HEARTBEATS_PER_STATUS_CHECK == 0:
                status = await db(_run_status, run_id=run.pk)
                if status not in Run.ACTIVE_STATUSES:
                    # The `end` on the bus was lost (or the run was deleted): finish from the DB.
                    if run.resumable:
                        async for chunk in _replay(cursor=cursor, names=names):
                            yield chunk
                    if not cursor.concluded:
                        yield _end_frame(cursor)
                    return
            continue
        if message.get("type") != bus.STREAM_EVENT or message.get("run_id") != run_id:
            continue
        event = bus.StreamEvent.from_message(message)
        if event.id <= cursor.last_sent:
            continue
        cursor.last_sent = event.id
        if wanted(event.event, names):
            yield frame(event.event, event.data, event.id)
            last_write = time.monotonic()
            silent_heartbeats = 0
        if event.event == "end":
            cursor.concluded = True
            return


async def heartbeats_until_run_ends(
    *,
    subscription: Subscription,
    run: Run,
    interval: float | None = None,
    check_every: float | None = None,
) -> AsyncIterator[None]:
    """Yield every `interval` seconds until the run's `end` arrives or the DB says it finished
    (looked up every `check_every` seconds, in case the `end` message was lost).

    The caller owns the subscription (opened before the run could end) and closes it.
    """
    interval = settings.SSE_HEARTBEAT_SECONDS if interval is None else interval
    if check_every is None:
        check_every = settings.SSE_HEARTBEAT_SECONDS * HEARTBEATS_PER_STATUS_CHECK
    run_id = str(run.pk)
    if await db(_run_status, run_id=run.pk) not in Run.ACTIVE_STATUSES:
        return
    last_beat = last_check = time.monotonic()
    while True:
        now = time.monotonic()
        timeout = min(interval - (now - last_beat), check_every - (now - last_check))
        message = await subscription.receive(within=timeout)
        if message is not None:
            if message.get("run_id") == run_id and message.get("event") == "end":
                return
            continue
        now = time.monotonic()
        if now - last_check >= check_every:
            last_check = now
            if await db(_run_status, run_id=run.pk) not in Run.ACTIVE_STATUSES:
                return
        if now - last_beat >= interval:
            last_beat = now
            yield None


async def cancel_after_disconnect(*, run_id: UUID) -> None:
    """Interrupt a run whose client went away (when it asked for that)."""
    from runs.exceptions import RunNotCancellable, RunNotFound
    from runs.services import cancel_run

    run = await db(selectors.run_by_id, run_id=run_id)
    if run is None:
        return
    try:
        await db(cancel_run, run=run, action=Run.CancelAction.INTERRUPT)
    except (RunNotCancellable, RunNotFound):
        return
    except Exception:
        logger.exception(
            "cancelling run %s after its client went away failed", run_id, extra=run_fields(run)
        )
    else:
        logger.info("run %s cancelled: its client went away", run_id, extra=run_fields(run))
