"""CPU per thread hop, in-process: the bridge's hops against asgiref's `sync_to_async`, one at a
time and 32 at once, alternated in one process.

    .venv/bin/python bench/hops.py [--hops 20000] [--rounds 3]

A hop here carries a function that does nothing, so what is measured is the hop itself: the
submit, the thread's wake-up, the result's way back and the waiting task's wake-up (CPU time of
the whole process, per hop). `call_sync(ENGINE)` is what the engine and the API use
(`deerflow_site.bridge`); `call_sync(BLOCKING)` still goes through asgiref's `sync_to_async` (on
the loop's default pool), as the engine's and the API's hops did before; `SerialThread, a
wake-up each` is the checkpoint saver's thread answering each call with a `call_soon_threadsafe`
of its own, as before the loop's inbox. Read the ratios; the machine's load moves them all.
"""

import argparse
import asyncio
import os
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def nothing() -> None:
    return None


def one_wake_up_per_call(serial: "Any") -> None:
    """Make `serial` answer each call with a `call_soon_threadsafe` of its own (the
    `SerialThread` before the loop's inbox), for comparison."""
    from deerflow_site.loop_inbox import settle

    def serve() -> None:
        while (item := serial._calls.get()) is not None:
            fn, (inbox, future) = item
            try:
                result, error = fn(), None
            except BaseException as exc:
                result, error = None, exc
            inbox.loop.call_soon_threadsafe(settle, future, result, error)

    serial._thread = threading.Thread(target=serve, daemon=True)
    serial._thread.start()


async def measure(hop: Callable[[], Awaitable[None]], hops: int, at_once: int) -> float:
    """CPU microseconds per hop, `at_once` hops in flight."""

    async def chain(count: int) -> None:
        for _ in range(count):
            await hop()

    cpu = time.process_time()
    await asyncio.gather(*(chain(hops // at_once) for _ in range(at_once)))
    return 1e6 * (time.process_time() - cpu) / (hops // at_once * at_once)


async def main(hops: int, rounds: int) -> None:
    from deerflow_site.bridge import Executor, SerialThread, call_sync

    serial = SerialThread("bench-serial")
    serial_before = SerialThread.__new__(SerialThread)
    serial_before._calls, serial_before._stopped = queue.SimpleQueue(), False
    one_wake_up_per_call(serial_before)
    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "call_sync(ENGINE)": lambda: call_sync(nothing, on=Executor.ENGINE),
        # Still asgiref's sync_to_async, on the loop's default pool.
        "call_sync(BLOCKING)": lambda: call_sync(nothing, on=Executor.BLOCKING),
        "SerialThread.call": lambda: serial.call(nothing),
        "SerialThread, a wake-up each": lambda: serial_before.call(nothing),
    }
    for way in ways.values():  # warm-up
        await measure(way, 200, 1)
    for at_once in (1, 32):
        results: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, way in ways.items():
                results[name].append(await measure(way, hops, at_once))
        for name, values in results.items():
            shown = ", ".join(f"{v:.1f}" for v in values)
            print(f"{at_once:>2} at once  {name:26s} {shown} µs CPU per hop")
    serial.stop()
    serial_before.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deerflow_site.settings")
    os.environ.setdefault("SECRET_KEY", "bench-hops-secret-key")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    asyncio.run(main(args.hops, args.rounds))
