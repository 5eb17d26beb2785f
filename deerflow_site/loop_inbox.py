"""Calls onto an event loop from other threads, sharing the loop's wake-ups: the way the
outcomes of `deerflow_site.bridge`'s thread hops come back to their callers, and other threads'
hand-offs to a loop (the worker's slots) reach it.

Each `call_soon_threadsafe` writes to the loop's self-pipe and wakes the loop; an inbox sends one
for the first call made while none is pending, and the calls made before that wake-up runs ride
on it, in order.

A thread hop's own hand-offs to its caller's loop may wait for its result (`after_reply`): they
then run there after the caller has resumed (a run started directly by admission begins after
the admitting request has answered its headers, or a stream its `metadata`).
"""

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Per thread: the calls `after_reply` holds while a hop runs there (None: no hop runs).
_held = threading.local()


class LoopInbox:
    """Calls onto one event loop from any thread, run there in one callback per wake-up: a
    call sent while an earlier one's wake-up has not run yet rides on it (no second
    `call_soon_threadsafe`, no second write to the loop's self-pipe). The outcomes of thread
    hops come back this way (`put`), and other threads' hand-offs to the loop (`call_soon`)
    share their wake-ups, in the order they were sent.

    It holds its loop weakly: a loop that has ended (one per `async_to_sync` outside the
    server's loop) is not kept alive by its inbox in `_inboxes`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The inbox's event loop; None once nothing else holds it (it has ended)."""
        return self._loop()

    def put(self, future: "asyncio.Future[Any]", result: Any, error: BaseException | None) -> None:
        """Settle `future` with `result` or `error` on the loop (skipped if it was cancelled
        meanwhile). Thread-safe; dropped when the loop is closed (nobody waits any more)."""
        self.call_soon(settle, future, result, error)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """`callback(*args)` on the loop, after the calls sent before. Thread-safe; raises
        RuntimeError when the loop is closed. What it raises goes to the loop's exception
        handler, as with `call_soon_threadsafe`."""
        with self._lock:
            self._calls.append((callback, args))
            if len(self._calls) > 1:
                return  # the wake-up sent for the first one is still to run
        try:
            loop = self._loop()
            if loop is None:
                raise RuntimeError("the event loop has ended")
            loop.call_soon_threadsafe(self._run_all)
        except RuntimeError:  # the loop is closed
            with self._lock:
                self._calls.clear()
            raise

    def _run_all(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for callback, args in calls:
            try:
                callback(*args)
            except Exception as exc:
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"Exception in callback {callback!r}", "exception": exc}
                )


#: One inbox per event loop (made on the loop's thread, used from any).
_inboxes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopInbox]" = (
    weakref.WeakKeyDictionary()
)


def loop_inbox() -> LoopInbox:
    """The running event loop's inbox (called on the loop; the inbox is then used from any
    thread)."""
    return inbox_of(asyncio.get_running_loop())


def inbox_of(loop: asyncio.AbstractEventLoop) -> LoopInbox:
    """`loop`'s inbox; on the loop's thread only."""
    inbox = _inboxes.get(loop)
    if inbox is None:
        inbox = _inboxes[loop] = LoopInbox(loop)
    return inbox


def call_soon_from_any_thread(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any
) -> bool:
    """`callback(*args)` on `loop`, from any thread, after the calls sent there before through
    its inbox (riding on their wake-up), without waiting for it; False when `loop` is closed
    (nothing is done then)."""
    inbox = _inboxes.get(loop)
    try:
        if inbox is not None:
            inbox.call_soon(callback, *args)
        else:
            loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # closed
        return False
    return True


def settle(future: "asyncio.Future[Any]", result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if isinstance(error, StopIteration):  # a future refuses it (Python 3.11): it never ended
        error = stop_iteration_error(error)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def stop_iteration_error(exc: StopIteration) -> RuntimeError:
    """What Python 3.12's futures make of a StopIteration (3.11's refuse it, leaving the
    caller waiting for ever)."""
    error = RuntimeError(
        "StopIteration interacts badly with generators and cannot be raised into a Future"
    )
    error.__cause__ = exc
    return error


def after_reply(callback: Callable[[], Any]) -> None:
    """`callback()` on this thread once the thread hop running here has sent its result to its
    caller's loop (what the callback sends to that loop through its inbox then runs after the
    caller's wake-up), or now when no hop runs here. A failure is logged."""
    held = getattr(_held, "calls", None)
    if held is None:
        _call_logged(callback)
    else:
        held.append(callback)


def hold_replies() -> list[Callable[[], Any]] | None:
    """Start holding `after_reply`'s calls on this thread (a hop starts); returns what was held
    before, for `release_replies`."""
    outer = getattr(_held, "calls", None)
    _held.calls = []
    return outer


def release_replies(outer: list[Callable[[], Any]] | None) -> None:
    """Make the calls held since `hold_replies` (the hop's result is sent), in order, then hold
    `outer` again."""
    held, _held.calls = _held.calls, outer
    for callback in held:
        _call_logged(callback)


def _call_logged(callback: Callable[[], Any]) -> None:
    try:
        callback()
    except Exception:
        logger.exception("a call made after a thread hop's reply failed")
