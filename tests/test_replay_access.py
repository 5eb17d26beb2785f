"""A stream's replay of stored events (after `Last-Event-ID`) ends once its viewer may no longer
view the thread, a share revoked while a long replay is being sent, as a live stream does
(tests/test_stream_access.py): the right is read again at most once per
`access.recheck_seconds()`, never per event, and the stream ends without `end`, the run left
alone. In process: the stream's generator, taken an event at a time as a slow client takes
them (the recheck's interval passed by moving the right's last read back), with a real share
(django-guardian) on the real database."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from guardian.shortcuts import assign_perm, remove_perm

from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus
from runs.engine.fanout import Subscription
from runs.engine.streaming import store_stream_events
from runs.models import Run
from runs.sse import thread_stream
from runs.sse.access import ViewRight
from runs.sse.frames import HEARTBEAT
from runs.sse.run_stream import stream_run_events
from runs.sse.thread_stream import ThreadCursor, stream_thread_events
from tests.engine_support import make_thread, pending_run
from tests.test_stream_access import _share

pytestmark = pytest.mark.django_db(transaction=True)

STORED = 40
WAIT = 30.0


class CountedRight(ViewRight):
    """The viewer's right, counting its reads (each one the real one)."""

    made: list["CountedRight"] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0
        CountedRight.made.append(self)

    async def still_viewable(self) -> bool:
        self.reads += 1
        return await super().still_viewable()


def _shared_run_with_stored_events(owner: Any, viewer: Any) -> Run:
    """A pending resumable run of a thread shared with `viewer`, STORED events of it stored."""
    thread = make_thread(user=owner)
    _share(thread.pk, viewer, assign_perm)
    run = pending_run(thread=thread, user=owner, resumable=True)
    ticks = [bus.StreamEvent.of(n, "custom", {"tick": n}) for n in range(1, STORED + 1)]
    store_stream_events(run.pk, ticks)
    return run


async def _sent_after_revoking(
    stream: AsyncIterator[bytes], right: CountedRight, run: Run, viewer: Any
) -> tuple[list[bytes], list[bytes]]:
    """The stream's first frames (metadata and ten events), then what it sends once the share
    is revoked and the right is due to be read again, up to its end or its first heartbeat (it
    went live)."""
    async with asyncio.timeout(WAIT):
        first = [await anext(stream) for _ in range(11)]
        assert right.reads == 0  # not per event
        await call_sync(_share, run.thread_id, viewer, remove_perm, on=Executor.THREAD_SENSITIVE)
        right.checked_at -= right.interval  # the interval has passed
        rest = []
        async for chunk in stream:
            if chunk == HEARTBEAT:
                break
            rest.append(chunk)
    return first, rest


async def test_a_run_streams_replay_ends_when_the_share_is_revoked(user, other_user) -> None:
    run = await call_sync(
        _shared_run_with_stored_events, user, other_user, on=Executor.THREAD_SENSITIVE
    )
    right = CountedRight(user_id=other_user.pk, thread_id=run.thread_id, unless_deleted=True)
    subscription = await Subscription.open(bus.run_stream_group(run.pk))
    stream = stream_run_events(subscription=subscription, run=run, last_event_id=-1, viewer=right)
    try:
        first, rest = await _sent_after_revoking(stream, right, run, other_user)
    finally:
        await stream.aclose()
    assert b"event: custom" in first[-1]
    assert rest == []  # no more events, no `end`
    assert right.reads == 1
    assert await Run.objects.filter(pk=run.pk).values_list("status", flat=True).aget() == "pending"


async def test_a_thread_streams_replay_ends_when_the_share_is_revoked(
    user, other_user, monkeypatch
) -> None:
    monkeypatch.setattr(thread_stream, "ViewRight", CountedRight)
    monkeypatch.setattr(CountedRight, "made", [])
    run = await call_sync(
        _shared_run_with_stored_events, user, other_user, on=Executor.THREAD_SENSITIVE
    )
    subscription = await Subscription.open(bus.thread_stream_group(run.thread_id))
    stream = stream_thread_events(
        subscription=subscription,
        thread_id=run.thread_id,
        user_id=other_user.pk,
        cursor=ThreadCursor(run_id=None, seq=-1),
        names=None,
    )
    try:
        first_chunk = await anext(stream)  # the right is made as the stream starts
        [right] = CountedRight.made
        _, rest = await _sent_after_revoking(stream, right, run, other_user)
    finally:
        await stream.aclose()
    assert b"event: metadata" in first_chunk
    assert rest == []
    assert right.reads == 1
