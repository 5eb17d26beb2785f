"""The hops between sync and async code: `call_sync` (sync code from async code, on a named
`Executor`), `call_async` (async code from sync code), and `_hop`, the one submit and one future
that the executors owning their threads, and the request threads, use instead of asgiref's
`sync_to_async` (see the package's docstring)."""

import asyncio
import contextlib
import contextvars
import enum
import functools
import os
import select
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async

try:  # what sync_to_async does with the caller's context (asgiref.local's thread ownership)
    from asgiref.sync import _restore_context
except ImportError:  # pragma: no cover - another asgiref: RequestThread.call uses sync_to_async
    _restore_context = None
from django.db import DatabaseError, InterfaceError, connection

from deerflow_site import loop_inbox
from deerflow_site.bridge.serial import SerialThread
from deerflow_site.loop_inbox import LoopInbox, inbox_of, stop_iteration_error

T = TypeVar("T")

#: Threads (so database connections at most) of `Executor.API` per process.
API_DB_THREADS = 8


class Executor(enum.Enum):
    """Where `call_sync` runs a sync function; see the module's docstring."""

    ENGINE = "engine"
    API = "api"
    THREAD_SENSITIVE = "thread-sensitive"
    BLOCKING = "blocking"


class _SerialPool:
    """A `SerialThread` as `_hop`'s submit: the call queued on the thread, in order, with a
    `concurrent.futures.Future` whose `cancel()` drops it while it has not started."""

    def __init__(self, thread: SerialThread) -> None:
        self.thread = thread

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        work: Future[Any] = Future()

        def run() -> None:
            if work.set_running_or_notify_cancel():
                fn(*args)  # (`_run_for_loop` answers its caller itself)
                work.set_result(None)

        if not self.thread.submit(run):
            raise RuntimeError(f"{self.thread.name} is stopped")
        return work


#: The engine's database thread (`Executor.ENGINE`); on SQLite the checkpoint saver's calls
#: run there too (`runs.engine.checkpointer`): a run's admission, claim, checkpoints and end
#: wake one thread, in batches.
ENGINE_THREAD = SerialThread(name="run-engine-db")

_POOLS: dict[Executor, Any] = {
    Executor.ENGINE: _SerialPool(ENGINE_THREAD),
    Executor.API: ThreadPoolExecutor(max_workers=API_DB_THREADS, thread_name_prefix="api-db"),
}


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
    if not connection.in_atomic_block:
        drop_a_dropped_connection()
    try:
        return fn(*args, **kwargs)
    except (DatabaseError, InterfaceError):
        if not connection.in_atomic_block:
            # It may be broken (whatever CONN_MAX_AGE says): the next call reconnects.
            connection.close()
        raise


def drop_a_dropped_connection() -> None:
    """Before a call on a thread that keeps its connection between calls: close the thread's
    idle connection if the database dropped it, so that the call connects afresh instead of
    failing (and no statement is ever sent twice). A server that ends a session (PostgreSQL
    restarting, `pg_terminate_backend`) says so and closes the socket: only an idle connection
    with something to read gets Django's health check (`is_usable`, a SELECT 1), so a live one
    costs no round trip. A connection cut without a word (a network gone) still fails its next
    call, which then closes it (`_keeping_the_connection`)."""
    raw = connection.connection
    if raw is not None and _has_input(raw) and not connection.is_usable():
        connection.close()


def _has_input(raw_connection: Any) -> bool:
    """Whether an idle DB-API connection's socket has something to read (without waiting)."""
    try:
        fileno = raw_connection.fileno()
    except AttributeError:  # no socket (SQLite)
        return False
    except connection.Database.Error:  # the driver's: closed, so let is_usable say
        return True
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))


def _stop_iteration_as_error(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn`, raising `stop_iteration_error` instead of a StopIteration (for asgiref's hops)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except StopIteration as exc:
            raise stop_iteration_error(exc) from exc

    return call
