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


class SerialThread:
    """One daemon thread that runs sync calls one at a time, in the order they are made, for
    async code on any event loop (each call answers on its caller's loop).

    A call is never dropped once made: cancelling its caller only stops the waiting, so a
    write made through it finishes, and a call made after it (on any loop) runs after it.
    Daemon: a thread left behind by a closed loop never holds up the interpreter's exit.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], Any], tuple[LoopInbox, asyncio.Future[Any]] | None] | None
        ] = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on this thread, awaited; returns what it returns and raises
        what it raises. RuntimeError once the thread is stopped."""
        if self._stopped:
            raise RuntimeError(f"{self._thread.name} is stopped")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((functools.partial(fn, *args, **kwargs), (inbox_of(loop), future)))
        return await future

    def submit(self, fn: Callable[[], Any]) -> bool:
        """`fn()` on this thread, after the calls made before; nobody waits for it. False (and
        `fn` never runs) once the thread is stopped."""
        if self._stopped:
            return False
        self._calls.put((fn, None))
        return True

    def stop(self) -> None:
        """End the thread once the calls made before have run; later calls raise."""
        if not self._stopped:
            self._stopped = True
            self._calls.put(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait (blocking, seconds) for the thread to end, after `stop()`."""
        self._thread.join(timeout)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, caller = item
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to the caller, as a thread pool does
                result, error = None, exc
            if caller is None:
                if error is not None:
                    logger.error(
                        "%s: a call nobody waits for failed", self._thread.name, exc_info=error
                    )
                continue
            inbox, future = caller
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                inbox.put(future, result, error)
