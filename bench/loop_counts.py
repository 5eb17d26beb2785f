"""Counts of the event loop's machinery per create+wait run, in-process (no daphne).

    .venv/bin/python bench/loop_counts.py [--concurrency 32] [--runs 320]

The same load as bench/inprocess.py (the `bench` echo graph, create+wait on one thread per
client, httpx's ASGI transport), with counting wrappers around the loop and the bridge: tasks
created (by the coroutine's name), futures made by the loop, `call_soon_threadsafe` wake-ups
(from other threads), timers armed (`call_at`), thread hops (`call_sync` by executor and
function, `SerialThread.call` by function), hand-overs nobody waits for (`SerialThread.submit`),
the puts into the work queues of the pools' and the saver's threads (`put`), and those of them
that wake a sleeping thread (`wake-up`: the queue empty and a consumer waiting in its `get`;
the put that pays the futex wake with the GIL held). Counts are divided by the runs measured;
the load generator's own tasks (httpx's) are among the tasks. Compare only with itself.
"""

import asyncio
import queue
import sys
import threading
import types
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inprocess

counts: Counter[str] = Counter()
counting = False  # wake-ups are counted once the warm-up is over


class WakeCountingQueue:
    """A `queue.SimpleQueue` that counts the puts finding a consumer asleep in `get` on it
    (installed before any thread takes from it)."""

    def __init__(self, label: str) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._label = label
        self._waiting = 0  # consumers in get (updated under the GIL: close enough to count)

    def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
        if counting:
            counts[f"put {self._label}"] += 1
            if self._waiting and self._queue.empty():
                counts[f"wake-up {self._label}"] += 1
        self._queue.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> object:
        self._waiting += 1
        try:
            return self._queue.get(block, timeout)
        finally:
            self._waiting -= 1

    def get_nowait(self) -> object:
        return self._queue.get_nowait()

    def put_nowait(self, item: object) -> None:
        self.put(item)

    def empty(self) -> bool:
        return self._queue.empty()

    def qsize(self) -> int:
        return self._queue.qsize()


def count_wake_ups() -> None:
    """Wake-up counting queues for the pools and the saver's threads, before any thread starts."""
    from deerflow_site.bridge import hops, serial

    for executor, pool in hops._POOLS.items():
        if isinstance(pool, hops._SerialPool):  # a SerialThread, started at import: its next
            taken = pool.thread._calls  # batch comes from the counting queue
            pool.thread._calls = WakeCountingQueue(f"SerialThread {executor.value}")
            taken.put([])  # (an empty batch: the thread goes on to the new queue's get)
            continue
        assert not pool._threads, "count_wake_ups after a pool's thread started"
        pool._work_queue = WakeCountingQueue(f"ThreadPoolExecutor {executor.value}")
    serial.queue = types.SimpleNamespace(
        SimpleQueue=lambda: WakeCountingQueue("SerialThread (the PostgreSQL saver's)")
    )


def _name(fn: object) -> str:
    fn = getattr(fn, "func", fn)  # functools.partial
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def instrument(loop: asyncio.AbstractEventLoop) -> None:
    from deerflow_site import bridge

    loop_thread = threading.get_ident()

    def task_factory(loop, coro, **kwargs):
        counts[f"task {getattr(coro, '__qualname__', type(coro).__name__)}"] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(task_factory)
    cls = type(loop)
    create_future, threadsafe, call_at = cls.create_future, cls.call_soon_threadsafe, cls.call_at

    def counted_future(self):
        caller = sys._getframe(1)
        if caller.f_code.co_filename.endswith(("asyncio/locks.py", "asyncio/queues.py")):
            caller = caller.f_back
        counts[f"future from {caller.f_code.co_qualname}"] += 1
        return create_future(self)

    def counted_threadsafe(self, callback, *args, context=None):
        where = "loop thread" if threading.get_ident() == loop_thread else "other thread"
        counts[f"call_soon_threadsafe from {where}: {_name(callback)}"] += 1
        return threadsafe(self, callback, *args, context=context)

    def counted_call_at(self, when, callback, *args, context=None):
        counts[f"timer {_name(callback)}"] += 1
        return call_at(self, when, callback, *args, context=context)

    cls.create_future = counted_future
    cls.call_soon_threadsafe = counted_threadsafe
    cls.call_at = counted_call_at

    call_sync, serial_call = bridge.call_sync, bridge.SerialThread.call
    serial_submit = bridge.SerialThread.submit

    async def counted_call_sync(fn, /, *args, on, **kwargs):
        counts[f"hop call_sync {on.value}: {_name(fn)}"] += 1
        return await call_sync(fn, *args, on=on, **kwargs)

    async def counted_serial_call(self, fn, /, *args, **kwargs):
        name = _name(fn)
        if name.endswith("._op"):  # a saver's operation: name the one it runs
            name = _name(args[0])
        counts[f"hop SerialThread.call: {name}"] += 1
        return await serial_call(self, fn, *args, **kwargs)

    def counted_serial_submit(self, fn):
        counts[f"handover SerialThread.submit: {_name(fn)}"] += 1
        return serial_submit(self, fn)

    bridge.call_sync = counted_call_sync
    bridge.SerialThread.call = counted_serial_call
    bridge.SerialThread.submit = counted_serial_submit
    # Modules that imported call_sync by name.
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if (
            name.startswith(("runs", "threads", "deerflow_site", "assistants"))
            and getattr(module, "call_sync", None) is call_sync
        ):
            module.call_sync = counted_call_sync


async def measure(concurrency: int, runs: int) -> None:
    import httpx

    from deerflow_site.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        threads = [
            (await client.post("/api/threads", json={})).json()["thread_id"]
            for _ in range(concurrency)
        ]

        async def loop(thread_id: str, count: int) -> None:
            for i in range(count):
                response = await client.post(
                    f"/api/threads/{thread_id}/runs/wait",
                    json={"assistant_id": "bench", "input": {"text": f"x{i}"}},
                )
                if response.json().get("reply") != f"echo: x{i}":
                    raise RuntimeError(f"unexpected answer: {response.text}")

        await asyncio.gather(*(loop(t, 3) for t in threads))  # warm-up
        instrument(asyncio.get_running_loop())
        global counting
        counting = True
        per_client = runs // concurrency
        await asyncio.gather(*(loop(t, per_client) for t in threads))
        done = per_client * concurrency
    print(f"concurrency {concurrency}, {done} runs; per run:")
    for key, value in sorted(counts.items(), key=lambda kv: (kv[0].split()[0], -kv[1])):
        if value / done >= 0.05:
            print(f"  {value / done:6.2f}  {key}")
    for kind in (
        "task",
        "future",
        "call_soon_threadsafe",
        "timer",
        "hop",
        "handover",
        "put",
        "wake-up",
    ):
        total = sum(v for k, v in counts.items() if k.startswith(kind))
        print(f"  total {kind}: {total / done:.2f}")


def main() -> None:
    args = inprocess.command_line(__doc__, runs=320)
    count_wake_ups()
    asyncio.run(measure(args.concurrency, args.runs))


if __name__ == "__main__":
    main()
