"""The bridge keeps nothing of an event loop that has ended, and every hop's caller gets an
answer, whatever its sync code raised.

Sync code outside the server's loop (a management command, a test, `call_async` from a thread
that has no loop) runs each `async_to_sync` on an event loop of its own: one loop per call,
each hopping to the database threads. A loop that has ended must not stay alive through the
bridge's per-loop state (the hop's inbox), or the process grows with every such call.
"""

import asyncio
import gc
import weakref
from typing import Any

import pytest

from deerflow_site.bridge import API_DB_THREADS, Executor, SerialThread, call_sync

#: The threads of each pool: each may remember the last loop it answered (asgiref's
#: thread-local `main_event_loop`, which `call_async` uses), as it did with `sync_to_async`.
THREADS = {Executor.ENGINE: 1, Executor.API: API_DB_THREADS}


def _hop_on_a_loop_of_its_own(executor: Executor) -> "weakref.ref[asyncio.AbstractEventLoop]":
    async def hop() -> weakref.ref[asyncio.AbstractEventLoop]:
        assert await call_sync(lambda: 7, on=executor) == 7
        return weakref.ref(asyncio.get_running_loop())

    return asyncio.run(hop())


@pytest.mark.parametrize("executor", [Executor.ENGINE, Executor.API])
def test_an_ended_event_loop_is_not_kept_alive_by_its_hops(executor: Executor) -> None:
    loops = [_hop_on_a_loop_of_its_own(executor) for _ in range(THREADS[executor] + 3)]
    gc.collect()
    alive = [loop for loop in loops if loop() is not None]
    assert len(alive) <= THREADS[executor]


def test_an_ended_event_loop_is_not_kept_alive_by_a_serial_threads_calls() -> None:
    serial = SerialThread("review-serial")

    async def call() -> weakref.ref[asyncio.AbstractEventLoop]:
        assert await serial.call(lambda: 3) == 3
        return weakref.ref(asyncio.get_running_loop())

    try:
        loops = [asyncio.run(call()) for _ in range(3)]
    finally:
        serial.stop()
    gc.collect()
    assert [loop() for loop in loops] == [None, None, None]


def _stop_iteration() -> Any:
    return next(iter(()))


@pytest.mark.parametrize("executor", [Executor.ENGINE, Executor.API, Executor.BLOCKING])
async def test_sync_code_raising_stop_iteration_fails_its_caller_instead_of_hanging(
    executor: Executor,
) -> None:
    """Python 3.11's futures refuse StopIteration; the caller gets a RuntimeError from it (as
    3.12's do) rather than a future that never ends."""
    with pytest.raises(RuntimeError) as raised:
        await asyncio.wait_for(call_sync(_stop_iteration, on=executor), timeout=30)
    assert isinstance(raised.value.__cause__, StopIteration)
