"""A stream viewer's right to view its thread, checked again while the stream goes on.

A stream is opened by a user who may view the thread; a share revoked (or the user deactivated,
or the thread deleted) while it is open must end it, as if it had been refused from the start.
Reading the right is one query or two, so a stream does it at fixed points only, never per
event: a thread stream as each run starts on it, and every stream before the first event it
sends once RECHECK_SECONDS have passed since the last check (an idle stream sends nothing, so it
reads nothing). The ending is the same everywhere: the stream closes where it is, without an
`end`; a client that reconnects gets the 404 of a thread it may not view.
"""

import time

from django.conf import settings
from django.contrib.auth import get_user_model

from deerflow_site.bridge import Executor, call_sync
from threads.exceptions import ThreadNotFound
from threads.models import Thread
from threads.selectors import require_visible_thread


def may_still_view(*, user_id: int, thread_id: str, unless_deleted: bool = False) -> bool:
    """Whether the user (read afresh: still active, their shares as they are now) may view the
    thread, which is still there; with `unless_deleted`, a thread that is gone counts as
    viewable (a run's stream: the run's deletion ends it, with its `end`)."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    try:
        require_visible_thread(user=user, thread_id=thread_id)
    except ThreadNotFound:
        return unless_deleted and not Thread.objects.filter(pk=thread_id).exists()
    return True


def recheck_seconds() -> float:
    """How long a stream sends on the right it last read: SSE_HEARTBEAT_SECONDS (5 s default)."""
    return settings.SSE_HEARTBEAT_SECONDS


class ViewRight:
    """A viewer's right to view a thread, read when the stream opened (`checked_at`, monotonic
    seconds) and again by `still_viewable()` once `due()` (every `recheck_seconds()`)."""

    __slots__ = ("checked_at", "interval", "thread_id", "unless_deleted", "user_id")

    def __init__(self, *, user_id: int, thread_id: str, unless_deleted: bool = False) -> None:
        self.user_id = user_id
        self.thread_id = thread_id
        self.unless_deleted = unless_deleted
        self.interval = recheck_seconds()
        self.checked_at = time.monotonic()

    def due(self) -> bool:
        """Whether the last read is older than the interval: a plain call, no query, so that a
        stream asks it before each event and awaits `still_viewable()` only when it is."""
        return time.monotonic() - self.checked_at >= self.interval

    async def still_viewable(self) -> bool:
        """The right read afresh now (a query or two)."""
        self.checked_at = time.monotonic()
        return await call_sync(
            may_still_view,
            user_id=self.user_id,
            thread_id=self.thread_id,
            unless_deleted=self.unless_deleted,
            on=Executor.API,
        )
