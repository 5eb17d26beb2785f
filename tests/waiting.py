"""Waiting, in a test, for what another task, thread or process brings about.

Await the thing itself where the code under test announces it (an asyncio event, a signal, a
channel message, a run's end through `/join`), bounded by `awaited`. Poll with `read_until` only
where nothing announces it: a row another thread or process writes, a flag a worker sets, a
server's own counters. Both fail after one bound, `PATIENCE`, generous for a loaded two-core
machine (a condition that comes true returns at once, so the bound costs nothing when all is
well), with an AssertionError that says what was waited for. (Tests of live servers wait with
`tests.live`, whose bound follows the servers' progress instead.)
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from deerflow_site.bridge import Executor, call_sync

T = TypeVar("T")

#: Seconds a test waits for a condition before it fails.
PATIENCE = 60.0
#: Seconds between two reads of a polled condition.
POLL_SECONDS = 0.02


async def read_until(
    read: Callable[[], Awaitable[T] | T],
    what: str,
    *,
    accept: Callable[[T], Any] = bool,
    within: float = PATIENCE,
) -> T:
    """`read()` (awaited when it gives an awaitable) every `POLL_SECONDS` until `accept` holds
    for its value, and that value; AssertionError naming `what` and the last value read after
    `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = read()
        if inspect.isawaitable(value):
            value = await value
        if accept(value):
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"waited {within:g} s in vain for {what} (last read: {value!r})")
        await asyncio.sleep(POLL_SECONDS)


def in_database(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`read` (a sync function that uses the ORM) as `read_until`'s `read`: called on the
    test's database thread."""
    return lambda: call_sync(read, on=Executor.THREAD_SENSITIVE)


async def awaited(awaitable: Awaitable[T], what: str, *, within: float = PATIENCE) -> T:
    """`await awaitable`; AssertionError naming `what` if it takes over `within` seconds."""
    bound = asyncio.timeout(within)
    try:
        async with bound:
            return await awaitable
    except TimeoutError:
        if not bound.expired():
            raise  # the awaitable's own
        raise AssertionError(f"waited {within:g} s in vain for {what}") from None
