"""The channel layer as the bus between web processes and workers: never the record.

Three kinds of message travel on it:
- stream events of a run, to the groups `run_stream_group(run_id)` and `thread_stream_group`
  (the SSE views listen), and its `end` alone to `run_end_group(run_id)` (`/wait`, `/join` and
  a cancel's wait listen: they need nothing else), with the run's final answer when its
  executor has it: only to other processes, through `fanout`, which hands them to this
  process's subscribers directly;
- cancel requests, to `worker_control_group(worker_id)` of the worker executing the run (each
  worker joins its own group before its first claim, so no cancel can come before it listens;
  one that starts while Redis hangs joins it once Redis answers, and meanwhile reads its runs'
  cancel flags from the database every poll);
- queue wake-ups, to `WAKEUP_GROUP` (idle workers listen);
- a subscriber's announcement (`LISTEN`) that it listens, from another process, to the stream
  of a run the worker executes (or its thread's), to `worker_control_group` too: the run's
  publisher then looks its groups' members up again (`publishing`).

A lost message costs latency, not correctness: workers also poll the database for pending runs
and cancel flags, and stream views also read stored events and the run's final status. So a
request never waits on a message it sends: a hung Redis (one that takes connections and answers
nothing, until the socket's timeout) must not hold it up. Its messages are sent in the background
on its event loop, each given up after SEND_SECONDS (`send_after_commit`, `wake_workers_soon`).
A request that must listen waits as long at most for its subscription (`fanout.Subscription`:
then `LayerUnanswered`, a 503, before any run is admitted), and never for its close.
"""

import asyncio
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from redis.exceptions import TimeoutError as RedisTimeoutError

from deerflow_site.bridge import call_async, callers_loop
from deerflow_site.loop_inbox import call_soon_from_any_thread

logger = logging.getLogger(__name__)

WAKEUP_GROUP = "runs.wakeup"
#: How long a message sent for a request (a cancel, a wake-up, a cancelled pending run's `end`)
#: may take before it is given up as lost (seconds).
SEND_SECONDS = 2.0

#: The `type` of each bus message (Channels dispatch names).
STREAM_EVENT = "run.event"
CANCEL = "run.cancel"
WAKEUP = "runs.wakeup"
LISTEN = "run.listen"
#: A worker's answer to a LISTEN, on the channel the LISTEN names (`publishing`).
LISTENING = "run.listening"
#: The `event` of a run's last stream event.
END = "end"


class LayerUnanswered(RedisTimeoutError):
    """The channel layer has not answered within SEND_SECONDS (a hung Redis): unavailable, as a
    Redis timeout is (a 503 with Retry-After, `deerflow_site.api.errors`)."""


def run_stream_group(run_id: UUID | str) -> str:
    return f"runs.stream.{run_id}"


def run_end_group(run_id: UUID | str) -> str:
    """A run's `end` event alone, for those who wait for its end (`publishing.publish_events`)."""
    return f"runs.end.{run_id}"


def worker_control_group(worker_id: str) -> str:
    """The group a worker hears cancels on (group names allow letters, digits, `-_.`)."""
    return "runs.worker." + re.sub(r"[^A-Za-z0-9_.-]", "-", worker_id)[:80]


def thread_stream_group(thread_id: str) -> str:
    """Every stream event of every run of a thread (for `GET /threads/{id}/stream`)."""
    return f"threads.stream.{thread_id}"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One SSE event of a run: `id` strictly increases per run; `data` is one-line JSON."""

    id: int
    event: str
    data: str

    @classmethod
    def of(cls, id: int, event: str, payload: Any) -> "StreamEvent":
        return cls(id=id, event=event, data=dumps(payload))

    def as_message(self, run_id: UUID | str) -> dict[str, Any]:
        return {
            "type": STREAM_EVENT,
            "run_id": str(run_id),
            "id": self.id,
            "event": self.event,
            "data": self.data,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> "StreamEvent":
        return cls(id=message["id"], event=message["event"], data=message["data"])


def dumps(payload: Any) -> str:
    """One-line JSON for SSE `data:` (LangChain objects serialised as the SDKs expect)."""
    from runs.engine.serialization import dumps

    return dumps(payload)


def layer() -> BaseChannelLayer:
    channel_layer = get_channel_layer()
    if channel_layer is None:
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    return channel_layer


def reaches_other_processes() -> bool:
    """Whether a message on the layer can reach another process (not the in-memory layer)."""
    return not isinstance(layer(), InMemoryChannelLayer)


async def publish_cancel(*, run_id: UUID | str, worker_id: str, action: str) -> None:
    """Ask the worker executing the run to stop it (`interrupt` or `rollback`)."""
    await layer().group_send(
        worker_control_group(worker_id),
        {"type": CANCEL, "run_id": str(run_id), "action": action},
    )


async def wake_workers() -> None:
    """Tell idle workers that a run may be ready to claim."""
    await layer().group_send(WAKEUP_GROUP, {"type": WAKEUP})


def wake_workers_soon() -> None:
    """`wake_workers` without waiting for it, from sync code: sent by the event loop of the
    async code this code serves (`_WakeUps`: one send in flight at a time there), else at once
    (`call_async`, outside of any loop). A failure, or no answer within SEND_SECONDS, is
    logged: a lost wake-up costs latency."""
    loop = callers_loop()
    if loop is None or not call_soon_from_any_thread(loop, _wake_up_from_this_loop):
        call_async(send_within_bound, wake_workers, {})


def bounded() -> asyncio.Timeout:
    """The bound of one exchange with the channel layer: `async with bus.bounded():` raises
    TimeoutError when the layer has not answered within SEND_SECONDS (a hung Redis)."""
    return asyncio.timeout(SEND_SECONDS)


async def send_within_bound(
    publish: Callable[..., Awaitable[None]],
    kwargs: dict[str, Any],
    *,
    failure: str = "a bus message was not sent",
) -> None:
    """`await publish(**kwargs)`, given up after SEND_SECONDS; a failure is logged (as
    `failure`, a warning with its traceback), not raised."""
    try:
        async with bounded():
            await publish(**kwargs)
    except Exception:
        logger.warning(failure, exc_info=True)


class _WakeUps:
    """An event loop's wake-up sends: one in flight at a time, and what is asked meanwhile makes
    one more after it (a worker woken by the send in flight may have read the queue before the
    newer run was committed), however many were asked: what a worker does with a wake-up
    (claim every eligible run its slots take) does not depend on how many came."""

    __slots__ = ("again", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.again = False

    def ask(self) -> None:
        if self.task is not None:
            self.again = True
            return
        self.task = asyncio.get_running_loop().create_task(self._send(), name="bus-wake-up")

    async def _send(self) -> None:
        try:
            while True:
                self.again = False
                await send_within_bound(wake_workers, {})
                if not self.again:
                    return
        finally:
            self.task = None


_wake_ups: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WakeUps]" = (
    weakref.WeakKeyDictionary()
)


def _wake_up_from_this_loop() -> None:
    loop = asyncio.get_running_loop()
    wake_ups = _wake_ups.get(loop)
    if wake_ups is None:
        wake_ups = _wake_ups[loop] = _WakeUps()
    wake_ups.ask()


def send_after_commit(publish: Callable[..., Awaitable[None]], /, **kwargs: Any) -> None:
    """Send a bus message once the current transaction commits (at once outside of one),
    without waiting for it: in the background on the event loop of the async code this code
    serves, else (outside of any loop) at once. A lost message only costs latency, so a
    failure, or no answer within SEND_SECONDS, is logged, not raised."""

    def send() -> None:
        loop = callers_loop()
        if loop is None or not call_soon_from_any_thread(
            loop, _send_in_background, publish, kwargs
        ):
            call_async(send_within_bound, publish, kwargs)

    transaction.on_commit(send)


#: Sends in flight in the background, held (the loop keeps only a weak reference to a task).
_sending: set["asyncio.Task[None]"] = set()


def _send_in_background(publish: Callable[..., Awaitable[None]], kwargs: dict[str, Any]) -> None:
    task = asyncio.get_running_loop().create_task(
        send_within_bound(publish, kwargs), name="bus-send"
    )
    _sending.add(task)
    task.add_done_callback(_sending.discard)


def out_of_band_event_id() -> int:
    """An id for a terminal event published by someone other than the run's executor.

    Executors number their events 1, 2, 3…; a reaper or a cancel of a pending run does not know
    the last number, so it uses the clock in milliseconds, which is larger than any counter.
    """
    import time

    return int(time.time() * 1000)


PING = "bus.ping"


async def ping() -> None:
    """A message through the channel layer to a new channel of this process and back: raises
    what the layer raises when it is unreachable (the caller bounds the time)."""
    channel_layer = layer()
    channel = await channel_layer.new_channel()
    await channel_layer.send(channel, {"type": PING})
    await channel_layer.receive(channel)
