"""One run's SSE stream: `metadata`, the stored events after `Last-Event-ID`, then live ones.

A stream view subscribes to the run's bus group first, then (for create-and-stream) admits the
run, so no event can be published before someone listens. It then replays what is stored after
`Last-Event-ID` (resumable runs), de-duplicates by id and goes live until `end`.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings

from deerflow_site.api.ids import validate_thread_id, validate_uuid
from deerflow_site.bridge import Executor, call_sync
from deerflow_site.streaming import LastChunk
from runs import selectors
from runs.cancellation import cancel_after_disconnect, spawn
from runs.engine import Subscription, announce_listener, bus, subscribe_then
from runs.models import Run
from runs.sse.access import ViewRight
from runs.sse.frames import (
    HEARTBEAT,
    MAX_INTEGER,
    event_filter,
    frame,
    metadata_frame,
    wanted,
)
from runs.sse.status_checks import run_has_ended

logger = logging.getLogger(__name__)

#: Silent heartbeats between two looks at the run's status in the database (a lost `end`), an
#: answer shared by the run's streams in this process (`status_checks`).
HEARTBEATS_PER_STATUS_CHECK = 2
REPLAY_PAGE = 500
#: Ids from here up are the clock-based ones of terminal events published out of band.
OUT_OF_BAND_IDS = 10**12


async def subscribe_to_run(
    *, user: Any, thread_id: str, run_id: str | UUID, action: str = "view", end_only: bool = False
) -> tuple[Run, Subscription]:
    """A run the user may `action` (404 otherwise), with a subscription to its stream group
    (`end_only`: to its `end` alone, `bus.run_end_group`) opened before the run was read, so
    nothing it publishes afterwards is missed."""
    thread_id = validate_thread_id(thread_id)
    run_uuid = validate_uuid(run_id, field="run_id")
    run, subscription = await subscribe_then(
        bus.run_end_group(run_uuid) if end_only else bus.run_stream_group(run_uuid),
        selectors.get_run,
        user=user,
        thread_id=thread_id,
        run_id=run_uuid,
        action=action,
    )
    if not end_only and run.status == Run.Status.RUNNING:  # a run's end is always looked for
        await _announce(subscription, [(run.pk, run.worker_id)])
    return run, subscription


def _running_executors(thread_id: str) -> list[tuple[UUID, str]]:
    running = Run.objects.filter(thread_id=thread_id, status=Run.Status.RUNNING)
    return list(running.values_list("pk", "worker_id"))


async def announce_to_thread_runs(subscription: Subscription, thread_id: str) -> None:
    """Tell the workers executing the thread's running runs that `subscription` (to the
    thread's stream, opened before this) listens (`announce_listener`), when the bus
    reaches other processes. A run claimed after this read finds the subscription at its first
    look-up. The subscription is closed if this fails."""
    if bus.reaches_other_processes():
        try:
            executors = await call_sync(_running_executors, thread_id, on=Executor.API)
        except BaseException:
            await subscription.close()
            raise
        await _announce(subscription, executors)


async def _announce(subscription: Subscription, executors: list[tuple[UUID, str]]) -> None:
    """`announce_listener` to the worker of each (run, worker), all at once (workers that do
    not answer hold the stream up for `bus.SEND_SECONDS` once, not once each); the
    subscription is closed if this is cancelled."""
    try:
        announcements = [announce_listener(run_id=r, worker_id=w) for r, w in executors]
        await asyncio.gather(*announcements)
    except BaseException:
        await subscription.close()
        raise


@dataclass(slots=True)
class _Cursor:
    """Where a client is in a run's stream, and what the stream keeps of the run: an open stream
    may last hours, so it holds these few fields rather than the run's model."""

    run_id: UUID
    last_sent: int
    resumable: bool = False
    concluded: bool = False  # `end` (or `gap`) was delivered
    lost_view: bool = False  # its viewer may no longer view the thread: it ends, without `end`

    @property
    def run_key(self) -> str:
        """The run id as the bus's messages carry it."""
        return str(self.run_id)


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


async def _replay(
    *, cursor: _Cursor, names: frozenset[str] | None, viewer: ViewRight | None
) -> AsyncIterator[bytes]:
    """Every stored event after the cursor, a page at a time; with a `viewer`, its right read
    again before an event once it is due (a long replay, to a slow client), as for live events:
    gone, the replay stops there (`cursor.lost_view`)."""
    more = True
    while more:
        frames, more = await call_sync(_replay_page, cursor=cursor, names=names, on=Executor.API)
        for chunk in frames:
            if viewer is not None and viewer.due() and not await viewer.still_viewable():
                cursor.lost_view = True
                return
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
    """The `end` of a run that ended before the stream listened: an id after the cursor's,
    within what `Last-Event-ID` accepts (a client's cursor may be any id up to 2**63 - 1)."""
    cursor.concluded = True
    event_id = min(max(bus.out_of_band_event_id(), cursor.last_sent + 1), MAX_INTEGER)
    cursor.last_sent = event_id
    return frame("end", "null", event_id)


async def stream_run_events(
    *,
    subscription: Subscription,
    run: Run,
    last_event_id: int | None = None,
    modes: Iterable[str] | None = None,
    cancel_on_disconnect: bool = False,
    viewer: ViewRight | None = None,
) -> AsyncIterator[bytes]:
    """The SSE bytes of one run, from a subscription to its stream group opened beforehand.

    Without `last_event_id`: `metadata`, then live events. With one (resumable runs):
    `metadata`, then the stored events after it (`-1`: all of them), then live ones. A client
    that goes away before the end cancels the run (interrupt) when `cancel_on_disconnect`.
    Heartbeats (`: heartbeat`) fill every SSE_HEARTBEAT_SECONDS without an event. With a
    `viewer`, its right to view the thread is read again before a live event once
    `access.recheck_seconds()` have passed since the last read (a stored one replayed too):
    gone, the stream ends there,
    without `end` (as a thread stream does), and without cancelling the run.

    The live part is this one generator: an idle stream resumes it, and nothing else of ours,
    at each heartbeat. A live `end` is its `LastChunk`: the handler closes the generator, then
    sends it as the response's end.
    """
    names = event_filter(modes)
    cursor = _Cursor(
        run_id=run.pk,
        last_sent=-1 if last_event_id is None else last_event_id,
        resumable=run.resumable,
    )
    try:
        async for chunk in _opening_frames(
            run=run, cursor=cursor, replay=last_event_id is not None, names=names, viewer=viewer
        ):
            yield chunk
        del run  # the stream keeps the cursor, not the model
        if cursor.concluded or cursor.lost_view:
            return
        heartbeat = settings.SSE_HEARTBEAT_SECONDS
        run_key = cursor.run_key
        last_write = time.monotonic()
        silent_heartbeats = 0
        while True:
            message = await subscription.receive(within=heartbeat - (time.monotonic() - last_write))
            if message is None:
                yield HEARTBEAT
                last_write = time.monotonic()
                silent_heartbeats += 1
                if silent_heartbeats % HEARTBEATS_PER_STATUS_CHECK == 0 and await run_has_ended(
                    cursor.run_id, max_age=heartbeat
                ):
                    # The `end` on the bus was lost (or the run was deleted): finish from the DB.
                    async for chunk in _closing_frames(cursor=cursor, names=names, viewer=viewer):
                        yield chunk
                    return
                continue
            if message.get("type") != bus.STREAM_EVENT or message.get("run_id") != run_key:
                continue
            event = bus.StreamEvent.from_message(message)
            if event.id <= cursor.last_sent:
                continue
            cursor.last_sent = event.id
            if event.event == "end":  # always wanted (a control event): the stream's last
                cursor.concluded = True
                yield LastChunk(frame(event.event, event.data, event.id))
                return
            if wanted(event.event, names):
                if viewer is not None and viewer.due() and not await viewer.still_viewable():
                    cursor.lost_view = True
                    return
                yield frame(event.event, event.data, event.id)
                last_write = time.monotonic()
                silent_heartbeats = 0
    finally:
        # The cancel first: a client leaving while the close awaits interrupts the close.
        if not cursor.concluded and cancel_on_disconnect and not cursor.lost_view:
            spawn(cancel_after_disconnect(run_id=cursor.run_id))
        await subscription.close()


async def _opening_frames(
    *,
    run: Run,
    cursor: _Cursor,
    replay: bool,
    names: frozenset[str] | None,
    viewer: ViewRight | None,
) -> AsyncIterator[bytes]:
    """`metadata`, then what is stored after the cursor (a replay), or `gap`, or the `end` of
    a run that ended before the stream listened; `cursor.concluded` says whether live events
    follow."""
    # `metadata` is id 0 on a first connection. A resumed one (Last-Event-ID, -1 included)
    # starts with it too, without an id: the client's last id stays where it was, and no id
    # is ever sent twice within the run's stream.
    cursor.last_sent = max(cursor.last_sent, 0)
    yield metadata_frame(
        run_id=str(run.pk),
        thread_id=run.thread_id,
        attempt=max(run.attempt, 1),
        event_id=None if replay else 0,
    )
    if replay and run.resumable:
        gap = await call_sync(_gap, cursor=cursor, run=run, on=Executor.API)
        if gap is not None:
            yield gap
            return
        async for chunk in _replay(cursor=cursor, names=names, viewer=viewer):
            yield chunk
        if cursor.concluded or cursor.lost_view:
            return
    if not run.is_active:
        # It finished before we listened: its own `end` went out already.
        yield _end_frame(cursor)


async def _closing_frames(
    *, cursor: _Cursor, names: frozenset[str] | None, viewer: ViewRight | None
) -> AsyncIterator[bytes]:
    """The stored events not sent yet (resumable runs), then `end`: the run ended and its `end`
    never reached this stream (none when the viewer lost its right meanwhile)."""
    if cursor.resumable:
        async for chunk in _replay(cursor=cursor, names=names, viewer=viewer):
            yield chunk
    if not (cursor.concluded or cursor.lost_view):
        yield _end_frame(cursor)
