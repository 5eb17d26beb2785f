"""The one bridge between sync and async code: `call_sync` runs sync code from async code on a
named executor, `call_async` runs async code from sync code. Nothing else in the project calls
asgiref's `sync_to_async` / `async_to_sync` or `asyncio.to_thread` (`tests/test_layout.py`).

Where sync code runs decides its database connection (Django keeps one per thread), so each
executor is named for the connection it stands for:

- `Executor.ENGINE`: the run engine's database thread. One thread, so the worker's ORM calls run
  one at a time on one connection, kept between calls (a worker has no requests to scope a
  connection by). Not Django's thread-sensitive thread: outside a request's context that one is
  shared with the request signals of long responses, whose `close_old_connections` would close
  the worker's connection at every request.
- `Executor.API`: the ORM work of long-lived async views (streams, waits, joins, cancels) and of
  what they call (admission, bus reads), on `API_DB_THREADS` threads that keep their connections.
  A long response must not pin a thread and a connection for its whole life, nor wait behind the
  graphs' own executor work; the pool bounds the connections the API uses, whatever the number of
  open streams.
- `Executor.THREAD_SENSITIVE`: Django's default, for code that must share the request's own sync
  thread (saving a session in middleware, short views, tests' set-up): inside a request, the
  request's thread, whose connection Django's request signals open and close; elsewhere, one
  thread shared by all such calls.
- `Executor.BLOCKING`: the event loop's default pool, for blocking work that needs no database
  connection (importing and compiling graphs, waiting on a thread's event).

Inside a request, Django's handler gives the request its own thread-sensitive thread: asgiref
makes a new one per request (and another to join it), with a new database connection. Here
`request_thread()` lends a pooled thread, whose connection (kept for `CONN_MAX_AGE`) serves
request after request, as a WSGI server's threads do.

The executors owning their threads (ENGINE, API) keep a thread's connection between calls and
drop it after a database error that may have broken it: the thread's next call reconnects
(Channels' `database_sync_to_async` with `close_old_connections`, without one per call).

`SerialThread` is one owner's thread (the SQLite checkpoint saver's, with its `sqlite3`
connection): calls run there one at a time in order, each a hop there and back (a queue put, the
result sent back), and a call once made runs to its end even when its caller is cancelled.

A hop to ENGINE, API, a request's thread or a `SerialThread` is a submit and one future, not
asgiref's `sync_to_async` (whose look-ups, shield and wrapped future cost about the hop itself;
what it does with the context is kept: `_hop`); its result comes back through the loop's
`LoopInbox` (`loop_inbox.py`: results ending while the loop is busy share one wake-up).
"""

import asyncio
import contextlib
import contextvars
import enum
import functools
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, async_to_sync, sync_to_async

try:  # what sync_to_async does with the caller's context (asgiref.local's thread ownership)
    from asgiref.sync import _restore_context
except ImportError:  # pragma: no cover - another asgiref: RequestThread.call uses sync_to_async
    _restore_context = None
from django.db import (
    DatabaseError,
    InterfaceError,
    close_old_connections,
    connection,
    connections,
    reset_queries,
)

from deerflow_site import loop_inbox
from deerflow_site.loop_inbox import LoopInbox, inbox_of, stop_iteration_error

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Threads (so database connections at most) of `Executor.API` per process.
API_DB_THREADS = 8
#: Idle request threads (and their connections) a process keeps; more are made when more
#: requests run at once, and ended when they come back beyond this number.
IDLE_REQUEST_THREADS = 4


class Executor(enum.Enum):
    """Where `call_sync` runs a sync function; see the module's docstring."""

    ENGINE = "engine"
    API = "api"
    THREAD_SENSITIVE = "thread-sensitive"
    BLOCKING = "blocking"


_POOLS = {
    Executor.ENGINE: ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-engine-db"),
    Executor.API: ThreadPoolExecutor(max_workers=API_DB_THREADS, thread_name_prefix="api-db"),
}


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


async def call_sync(fn: Callable[..., T], /, *args: Any, on: Executor, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` (sync code) on the executor `on`, awaited; returns what `fn` returns
    and raises what it raises. Context variables (the run named on log lines) go along.

    Cancelling the caller stops the waiting: a call not started yet is dropped, one that has
    started runs to its end on its thread (and the task of a `call_async` it is awaiting is
    cancelled)."""
    if on is Executor.THREAD_SENSITIVE:
        return await sync_to_async(_stop_iteration_as_error(fn), thread_sensitive=True)(
            *args, **kwargs
        )
    if on is Executor.BLOCKING:
        return await sync_to_async(_stop_iteration_as_error(fn), thread_sensitive=False)(
            *args, **kwargs
        )
    pool = _POOLS[on]
    return await _hop(
        pool.submit,
        functools.partial(_keeping_the_connection, fn, args, kwargs),
        drop_unstarted=True,
    )


async def _hop(
    submit: Callable[..., Future[Any]], call: Callable[[], T], *, drop_unstarted: bool
) -> T:
    """`call()` on the thread `submit` hands it to, awaited: what asgiref's `sync_to_async`
    does for it (the caller's context and asgiref `Local` values there and back, `call_async`
    inside reaching the caller's loop, its tasks cancelled with the caller), as one submit and
    one future, the result back through the loop's `LoopInbox`. A cancelled caller stops
    waiting; a call not started yet is dropped when `drop_unstarted`, else runs anyway."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    context = contextvars.copy_context()
    tasks: list[asyncio.Task[Any]] = []  # asgiref puts a `call_async`'s task here
    work = submit(_run_for_loop, inbox_of(loop), future, context, tasks, call)
    try:
        return await future
    except asyncio.CancelledError:
        if drop_unstarted:
            work.cancel()
        for task in tasks:
            task.cancel()
        raise
    finally:
        if _restore_context is not None:
            _restore_context(context)


def _run_for_loop(
    inbox: LoopInbox,
    future: "asyncio.Future[Any]",
    context: contextvars.Context,
    tasks: list[asyncio.Task[Any]],
    call: Callable[[], Any],
) -> None:
    """`_hop`'s side on the thread."""
    local = SyncToAsync.threadlocal  # where asgiref's async_to_sync finds the caller's loop
    before = local.__dict__.copy()
    local.main_event_loop = inbox.loop  # alive: its caller waits on it
    local.main_event_loop_pid = os.getpid()
    local.task_context = tasks
    outer = loop_inbox.hold_replies()

    def in_context() -> Any:
        if _restore_context is not None:
            _restore_context(context)  # the caller's `Local` values, owned by this thread
        return call()

    try:
        result, error = context.run(in_context), None
    except BaseException as exc:  # handed to the caller, as a thread pool does
        result, error = None, exc
    finally:  # the thread keeps no reference to the caller's loop
        local.__dict__.clear()
        local.__dict__.update(before)
    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
        inbox.put(future, result, error)
    loop_inbox.release_replies(outer)  # `after_reply`: behind the result, in its inbox


def call_async(fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """`await fn(*args, **kwargs)` from sync code: on the event loop of the async code that
    called this code through `call_sync`, if any, else on a new loop; returns what `fn` returns
    and raises what it raises. Not from a thread that runs an event loop (RuntimeError)."""
    return async_to_sync(fn)(*args, **kwargs)


def callers_loop() -> asyncio.AbstractEventLoop | None:
    """The open event loop of the async code this thread's sync code serves (where `call_async`
    runs its code: a hop's or asgiref's `sync_to_async`'s caller), if any."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return None if loop is None or loop.is_closed() else loop


def _keeping_the_connection(
    fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    try:
        return fn(*args, **kwargs)
    except (DatabaseError, InterfaceError):
        if not connection.in_atomic_block:
            # It may be broken (whatever CONN_MAX_AGE says): the next call reconnects.
            connection.close()
        raise


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

    def submit(self, fn: Callable[[], Any]) -> None:
        """`fn()` on this thread, after the calls made before; nobody waits for it (ignored
        once the thread is stopped)."""
        if not self._stopped:
            self._calls.put((fn, None))

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


def _stop_iteration_as_error(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn`, raising `stop_iteration_error` instead of a StopIteration (for asgiref's hops)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except StopIteration as exc:
            raise stop_iteration_error(exc) from exc

    return call
