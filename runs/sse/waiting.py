"""Waiting on a run: heartbeats until it ends (`/wait`, `/join`, cancel with `?wait=1`), and the
final answer of `/wait` and `/join`."""

import asyncio
import time
from collections.abc import AsyncIterator

from django.conf import settings

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.streaming import LastChunk
from runs import selectors
from runs.cancellation import cancel_after_disconnect, spawn
from runs.engine import Subscription, answers
from runs.models import Run
from runs.sse.access import ViewRight
from runs.sse.run_stream import HEARTBEATS_PER_STATUS_CHECK
from runs.sse.status_checks import run_has_ended

WAIT_HEARTBEAT = b"\n"
#: The answer of a wait or join whose caller may no longer view the thread (a share revoked
#: during the run), in the shape of a failed run's answer.
NO_LONGER_VISIBLE = (
    b'{"__error__":{"error":"NotFound","message":"The thread is no longer visible to you."}}'
)


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


async def final_answer_body(
    *,
    subscription: Subscription,
    run: Run,
    cancel_on_disconnect: bool,
    viewer: ViewRight | None = None,
) -> AsyncIterator[bytes]:
    """Newlines while the run goes on (JSON ignores leading whitespace), then its final state:
    the one its end left in this process or sent with its `end` (`answers.expect` was called
    for the run before it could end), else read from the database.

    It starts with an empty chunk: daphne writes the status line and headers with the first
    body message, and the SDKs' `on_run_created` reads the run id from them at once. The answer
    is its `LastChunk`: the handler closes this generator, then sends the answer as the
    response's end (one message less). With a `viewer` whose right to view the thread is due
    a fresh read (`access`) and gone, the answer is NO_LONGER_VISIBLE instead of the state.
    """
    answered = False
    try:
        yield b""
        async for _ in heartbeats_until_run_ends(subscription=subscription, run=run):
            yield WAIT_HEARTBEAT
        body = answers.take(run.pk)
        if viewer is not None and viewer.due() and not await viewer.still_viewable():
            body = NO_LONGER_VISIBLE
        elif body is answers.MISSING:
            answer = await call_sync(selectors.final_answer, run_id=run.pk, on=Executor.API)
            body = answers.encode(answer)
        answered = True
        yield LastChunk(body)
    finally:
        answers.forget(run.pk)
        # The cancel first: a client leaving while the close awaits interrupts the close.
        if not answered and cancel_on_disconnect:
            spawn(cancel_after_disconnect(run_id=run.pk))
        await subscription.close()
