"""Waiting on a run: heartbeats until it ends (`/wait`, `/join`, cancel with `?wait=1`)."""

import time
from collections.abc import AsyncIterator

from django.conf import settings

from deerflow_site.bridge import Executor, call_sync
from runs import selectors
from runs.engine import Subscription
from runs.models import Run
from runs.sse.run_stream import HEARTBEATS_PER_STATUS_CHECK


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
    if not await _active(run):
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
            if not await _active(run):
                return
        if now - last_beat >= interval:
            last_beat = now
            yield None


async def _active(run: Run) -> bool:
    """Whether the run is pending or running, as the database says now."""
    status = await call_sync(selectors.run_status, run_id=run.pk, on=Executor.API)
    return status in Run.ACTIVE_STATUSES
