"""`SerialThread`: a thread of one owner's own, whose calls run one at a time in the order
they were made (see the package's docstring)."""

import asyncio
import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from deerflow_site.loop_inbox import LoopInbox, inbox_of

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: One call: the function, and the caller's inbox and future (None: nobody waits).
_Call = tuple[Callable[[], Any], tuple[LoopInbox, "asyncio.Future[Any]"] | None]


class SerialThread:
    """One daemon thread that runs sync calls one at a time, in the order they are made, for
    async code on any event loop (each call answers on its caller's loop).

    A call is never dropped once made: cancelling its caller only stops the waiting, so a
    write made through it finishes, and a call made after it (on any loop) runs after it.
    Daemon: a thread left behind by a closed loop never holds up the interpreter's exit.

    Calls travel in batches: a call made while the batch queued last is not yet taken by the
    thread joins it, so the calls of one busy stretch of the loops (the checkpoint writes of
    many runs) cost one queue put and at most one wake-up of the thread, not one each. The
    thread runs a batch's calls one by one, in order, each failing alone.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[list[_Call] | None] = queue.SimpleQueue()
        self._open: list[_Call] | None = None  # queued, not yet taken by the thread
        self._lock = threading.Lock()  # guards `_open`, `_stopped` and the queue's order
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on this thread, awaited; returns what it returns and raises
        what it raises. RuntimeError once the thread is stopped."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._enqueue((functools.partial(fn, *args, **kwargs), (inbox_of(loop), future))):
            raise RuntimeError(f"{self._thread.name} is stopped")
        return await future

    def submit(self, fn: Callable[[], Any]) -> bool:
        """`fn()` on this thread, after the calls made before; nobody waits for it. False (and
        `fn` never runs) once the thread is stopped."""
        return self._enqueue((fn, None))

    def _enqueue(self, call: _Call) -> bool:
        """Add `call` to the open batch, else queue a new batch of it; False once stopped."""
        with self._lock:
            if self._stopped:
                return False
            if self._open is not None:
                self._open.append(call)
            else:
                self._open = [call]
                self._calls.put(self._open)
        return True

    @property
    def name(self) -> str:
        return self._thread.name

    def is_current(self) -> bool:
        """Whether the calling code runs on this thread."""
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        """End the thread once the calls made before have run; later calls raise."""
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._calls.put(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait (blocking, seconds) for the thread to end, after `stop()`."""
        self._thread.join(timeout)

    def _serve(self) -> None:
        while (batch := self._calls.get()) is not None:
            with self._lock:  # closed: later calls go to a new batch, queued after this one
                if self._open is batch:
                    self._open = None
            for call in batch:
                self._run(call)
            batch = call = None  # (what the calls hold, a closed loop, is not kept meanwhile)

    def _run(self, call: _Call) -> None:
        fn, caller = call
        try:
            result, error = fn(), None
        except BaseException as exc:  # handed to the caller, as a thread pool does
            result, error = None, exc
        if caller is None:
            if error is not None:
                name = self._thread.name
                logger.error("%s: a call nobody waits for failed", name, exc_info=error)
            return
        inbox, future = caller
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed
            inbox.put(future, result, error)
