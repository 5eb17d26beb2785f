"""Request threads: `request_thread()` lends each request a pooled thread for its
thread-sensitive sync code, whose database connection serves request after request (see the
package's docstring)."""

import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections, connections, reset_queries

from deerflow_site.bridge.hops import _hop, _restore_context

T = TypeVar("T")

#: Idle request threads (and their connections) a process keeps; more are made when more
#: requests run at once, and ended when they come back beyond this number.
IDLE_REQUEST_THREADS = 4


class RequestThread(ThreadPoolExecutor):
    """One request's thread, which knows whether sync code ran on it since the upkeep of its
    database connections (Django's request_finished work: `connection_upkeep`)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        #: Sync calls are numbered as they are submitted; the upkeep that follows call n covers
        #: calls up to n, so a call that ends after later ones were submitted (a view
        #: outliving its request) leaves their upkeep due.
        self._submitted = 0
        self._running = 0
        self._kept_up_to = 0

    @property
    def needs_upkeep(self) -> bool:
        return self._submitted != self._kept_up_to

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self._submitted += 1
        return super().submit(self._numbered, self._submitted, fn, args, kwargs)

    def _numbered(
        self, number: int, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        self._running = number
        return fn(*args, **kwargs)

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on this thread, awaited: what asgiref's thread-sensitive
        `sync_to_async` does for it (the caller's context and `Local` values there and back,
        `async_to_sync` inside reaching the caller's loop, its tasks cancelled with the caller),
        as one submit and one future instead of asgiref's executor look-up, wrapped future and
        shield. Cancelling the caller stops the waiting; `fn` runs to its end."""
        if _restore_context is None:  # pragma: no cover
            return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
        return await _hop(self.submit, functools.partial(fn, *args, **kwargs), drop_unstarted=False)

    def ending_with_upkeep(self, fn: Callable[..., T]) -> Callable[..., T]:
        """`fn` (sync code this thread runs), followed on the thread by the upkeep, so that a
        request whose sync code is one call needs no other."""

        @functools.wraps(fn)
        def then_upkeep(*args: Any, **kwargs: Any) -> T:
            submitted = self._running  # the number of the call this runs in
            try:
                return fn(*args, **kwargs)
            finally:
                connection_upkeep()
                self._kept_up_to = max(self._kept_up_to, submitted)

        return then_upkeep

    def upkeep_if_used(self) -> None:
        """Queue the upkeep behind the request's sync code, if any ran since the last one;
        nobody waits for it (the thread does it before its next request's work)."""
        if self.needs_upkeep:
            self._kept_up_to = self._submitted
            super().submit(connection_upkeep)


def ending_with_upkeep(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` (sync code), followed on its thread by `connection_upkeep`: for sync views that run
    off the request threads, on asgiref's shared thread-sensitive thread."""

    @functools.wraps(fn)
    def then_upkeep(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connection_upkeep()

    return then_upkeep


def connection_upkeep() -> None:
    """What Django's request_finished receivers do for the calling thread's connections: close
    one past CONN_MAX_AGE, broken, or left in a transaction; start DEBUG's query log afresh."""
    close_old_connections()
    reset_queries()


#: Request threads waiting for a request (used and changed on the event loop's thread only).
_idle_request_threads: list[RequestThread] = []
#: The thread lent to the current request, inside `request_thread()`.
_current_request_thread: contextvars.ContextVar[RequestThread | None] = contextvars.ContextVar(
    "request_thread", default=None
)


def current_request_thread() -> RequestThread | None:
    """The thread `request_thread()` lent the current request (None outside one)."""
    return _current_request_thread.get()


@contextlib.asynccontextmanager
async def request_thread() -> AsyncIterator[None]:
    """Run the thread-sensitive sync code of one request (a sync view, Django's request
    signals, middleware that saves the session) on a pooled thread, for as long as the block
    lasts. The request has the thread to itself meanwhile, as with Django's own context.

    When the request ran sync code there, the thread's connection upkeep follows it on the
    thread, without a wait (`RequestThread.upkeep_if_used`): the response is closed on the
    event loop (`deerflow_site.asgi`), not in one more thread hop."""
    if _idle_request_threads:
        executor = _idle_request_threads.pop()
    else:
        executor = RequestThread()
    token = _current_request_thread.set(executor)
    try:
        async with ThreadSensitiveContext(executor=executor):
            yield
    finally:
        _current_request_thread.reset(token)
        executor.upkeep_if_used()
        if len(_idle_request_threads) < IDLE_REQUEST_THREADS:
            _idle_request_threads.append(executor)
        else:
            executor.submit(connections.close_all)
            executor.shutdown(wait=False)
