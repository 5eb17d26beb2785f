"""`GET /threads/{id}/stream`: every run of a thread as it comes, over one SSE connection.

Event ids are `<run_id>:<seq>` (a run's own ids restart at 1), so `Last-Event-ID` names both the
run and the position in it: stored events of resumable runs after it are replayed, then live ones.
The stream stays open across runs until the client leaves, or until the client may no longer
view the thread (its share revoked, the thread deleted), read again as each run starts and
during a run (`access`): the stream ends there.
"""

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from uuid import UUID

from django.conf import settings

from deerflow_site.api.ids import validate_uuid
from deerflow_site.bridge import Executor, call_sync
from deerflow_site.errors import Invalid
from runs.engine import Subscription, bus
from runs.models import Run, RunStreamEvent
from runs.sse.access import ViewRight
from runs.sse.frames import (
    CONTROL_EVENTS,
    HEARTBEAT,
    event_filter,
    frame,
    metadata_frame,
    parse_event_id,
    wanted,
)

#: Events of the `lifecycle` thread stream mode: when runs start and end.
LIFECYCLE_EVENTS = frozenset(CONTROL_EVENTS)
REPLAY_LIMIT = 5000


@dataclass(frozen=True)
class ThreadCursor:
    """A thread stream's `Last-Event-ID`: a run and the last id of it seen (`-1`: from the start
    of the runs still in flight)."""

    run_id: UUID | None
    seq: int

    @classmethod
    def parse(cls, value: str | None) -> "ThreadCursor | None":
        if value is None or value == "":
            return None
        if value.strip() == "-1":
            return cls(run_id=None, seq=-1)
        run_id, sep, seq = value.rpartition(":")
        if not sep:
            raise Invalid({"Last-Event-ID": ["Expected '<run_id>:<id>' or -1."]})
        return cls(run_id=validate_uuid(run_id, field="Last-Event-ID"), seq=parse_event_id(seq))


def check_cursor(*, thread_id: str, cursor: ThreadCursor | None) -> None:
    """Raise Invalid (422) unless the cursor's run is a run of the thread (or there is none)."""
    if cursor is None or cursor.run_id is None:
        return
    if not Run.objects.filter(pk=cursor.run_id, thread_id=thread_id).exists():
        raise Invalid({"Last-Event-ID": ["Not a run of this thread."]})


@dataclass
class _Position:
    """The last id sent of every run seen on this connection; a resumed connection (one with
    a Last-Event-ID) sends each run's `metadata` without an id, as run streams do."""

    sent: dict[str, int] = field(default_factory=dict)
    resumed: bool = False

    def frames(self, run_id: str, thread_id: str, event: bus.StreamEvent, names) -> list[bytes]:
        if event.id <= self.sent.get(run_id, 0):
            return []
        out = []
        if run_id not in self.sent and wanted("metadata", names):
            out.append(
                metadata_frame(
                    run_id=run_id,
                    thread_id=thread_id,
                    attempt=1,
                    event_id=None if self.resumed else f"{run_id}:0",
                )
            )
        self.sent[run_id] = event.id
        if wanted(event.event, names):
            out.append(frame(event.event, event.data, f"{run_id}:{event.id}"))
        return out


def thread_event_filter(modes: Iterable[str]) -> frozenset[str] | None:
    """`run_modes` (the default) lets every run event through; `lifecycle` only starts and ends;
    run stream modes (`values`, ...) narrow it like a run join does."""
    modes = [mode for mode in modes if mode != "run_modes"]
    if "lifecycle" in modes:
        rest = event_filter([mode for mode in modes if mode != "lifecycle"]) or frozenset()
        return LIFECYCLE_EVENTS | rest
    return event_filter(modes)


def _stored_after(*, thread_id: str, cursor: ThreadCursor) -> list[tuple[str, bus.StreamEvent]]:
    """Stored events of the thread's runs after the cursor, run by run in creation order."""
    runs = Run.objects.filter(thread_id=thread_id, resumable=True)
    if cursor.run_id is None:
        runs = runs.active()
        after_run = None
    else:
        after_run = Run.objects.filter(pk=cursor.run_id, thread_id=thread_id).first()
        if after_run is None:
            raise Invalid({"Last-Event-ID": ["Not a run of this thread."]})
        runs = runs.filter(created_at__gte=after_run.created_at)
    events = (
        RunStreamEvent.objects.filter(run__in=runs.values("pk"))
        .select_related(None)
        .order_by("run__created_at", "run_id", "seq")
        .values_list("run_id", "seq", "event", "data")
    )
    out = []
    for run_id, seq, event, data in events[:REPLAY_LIMIT]:
        if after_run is not None and run_id == after_run.pk and seq <= cursor.seq:
            continue
        out.append((str(run_id), bus.StreamEvent(id=seq, event=event, data=data)))
    return out


async def stream_thread_events(
    *,
    subscription: Subscription,
    thread_id: str,
    user_id: int,
    cursor: ThreadCursor | None,
    names: frozenset[str] | None,
) -> AsyncIterator[bytes]:
    """The SSE bytes of every run of a thread, from a subscription to its thread group.

    The user's right to view the thread is read again as each run starts on the stream, and
    during a run or a replay at most every `access.recheck_seconds()` (one query or two each
    time): the stream ends, sending nothing more, once it is gone."""
    position = _Position(resumed=cursor is not None)
    viewer = ViewRight(user_id=user_id, thread_id=thread_id)
    try:
        if cursor is not None:
            if cursor.run_id is not None:
                position.sent[str(cursor.run_id)] = cursor.seq
            for run_id, event in await call_sync(
                _stored_after, thread_id=thread_id, cursor=cursor, on=Executor.API
            ):
                # A long replay to a slow client: the right read again as for live events.
                if viewer.due() and not await viewer.still_viewable():
                    return
                for chunk in position.frames(run_id, thread_id, event, names):
                    yield chunk
        heartbeat = settings.SSE_HEARTBEAT_SECONDS
        last_write = time.monotonic()
        while True:
            message = await subscription.receive(within=heartbeat - (time.monotonic() - last_write))
            if message is None:
                yield HEARTBEAT
                last_write = time.monotonic()
                continue
            if message.get("type") != bus.STREAM_EVENT:
                continue
            event = bus.StreamEvent.from_message(message)
            if message["run_id"] not in position.sent:
                if not await viewer.still_viewable():
                    return
            elif viewer.due() and not await viewer.still_viewable():
                return
            for chunk in position.frames(message["run_id"], thread_id, event, names):
                yield chunk
                last_write = time.monotonic()
    finally:
        await subscription.close()
