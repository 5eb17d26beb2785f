"""Waiting on a run: heartbeats until it ends (`/wait`, `/join`, cancel with `?wait=1`)."""

import asyncio
import time
from collections.abc import AsyncIterator

from django.conf import settings

from runs.engine import Subscription, answers
from runs.models import Run
from runs.sse.run_stream import HEARTBEATS_PER_STATUS_CHECK
from runs.sse.status_checks import run_has_ended


async def heartbeats_until_run_ends(
    *,
    subscription: Subscription | None,
    run: Run,
    interval: float | None = None,
    check_every: float | None = None,
) -> AsyncIterator[None]:
    """Yield every `interval` seconds until the run's `end` arrives or the DB says it finished
    (looked up every `check_every` seconds, in case the `end` message was lost; the answer is
    shared with the run's other streams in this process).

    `run` was read (or admitted) after the subscription opened. The caller owns the
    subscription and closes it; without one (the channel layer unreachable) the run's row
    alone says when it ended. An `end` that brings the run's answer leaves it for this
    process's requests waiting for it (`answers.arrived`).
    """
    interval = settings.SSE_HEARTBEAT_SECONDS if interval is None else interval
    if check_every is None:
        check_every = settings.SSE_HEARTBEAT_SECONDS * HEARTBEATS_PER_STATUS_CHECK
    run_id = str(run.pk)
    # Read after the subscription opened: if it ended since, its `end` is on the subscription.
    if not run.is_active:
        return
    last_beat = last_check = time.monotonic()
    while True:
        now = time.monotonic()
        timeout = min(interval - (now - last_beat), check_every - (now - last_check))
        if subscription is None:
            await asyncio.sleep(max(timeout, 0))
            message = None
        else:
            message = await subscription.receive(within=timeout)
        if message is not None:
            if message.get("run_id") == run_id and message.get("event") == "end":
                if (body := message.get("answer")) is not None:  # from another process
                    answers.arrived(run_id, body)
                return
            continue
        now = time.monotonic()
        if now - last_check >= check_every:
            last_check = now
            if await run_has_ended(run.pk, max_age=check_every / 2):
                return
        if now - last_beat >= interval:
            last_beat = now
            yield None
