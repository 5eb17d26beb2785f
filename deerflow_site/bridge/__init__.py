"""The one bridge between sync and async code: `call_sync` runs sync code from async code on a
named executor, `call_async` runs async code from sync code. Nothing else in the project calls
asgiref's `sync_to_async` / `async_to_sync` or `asyncio.to_thread` (`tests/test_layout.py`).
The package's modules: `hops` (the executors, `call_sync`, `call_async`), `request_threads`
(the threads lent to requests), `serial` (`SerialThread`); import their names from here.

Where sync code runs decides its database connection (Django keeps one per thread), so each
executor is named for the connection it stands for:

- `Executor.ENGINE`: the run engine's database thread, `ENGINE_THREAD` (a `SerialThread`). One
  thread, so the worker's ORM calls run one at a time on one connection, kept between calls (a
  worker has no requests to scope a connection by). Not Django's thread-sensitive thread:
  outside a request's context that one is shared with the request signals of long responses,
  whose `close_old_connections` would close the worker's connection at every request. On SQLite
  the checkpoint saver's calls and the admission of a streamed or waited run run here too (one
  writer at a time anyway; a run then wakes one database thread, in batches with the others').
  Code on this thread must not wait (`call_async`) for code that calls it: the thread would
  wait for itself (admission moves to the API pool first, `runs.exceptions.NeedsAnotherThread`).
- `Executor.API`: the ORM work of long-lived async views (streams, waits, joins, cancels) and of
  what they call (admission on PostgreSQL, bus reads), on `API_DB_THREADS` threads that keep
  their connections. A long response must not pin a thread and a connection for its whole life,
  nor wait behind the graphs' own executor work; the pool bounds the connections the API uses,
  whatever the number of open streams.
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
(Channels' `database_sync_to_async` with `close_old_connections`, without one per call). Before
each call, an idle connection the database dropped (PostgreSQL restarted) is noticed and
replaced (`drop_a_dropped_connection`: a health check only when the socket has something to
read), so the first call after a restart succeeds rather than fails.

`SerialThread` is one owner's thread (the engine's, which on SQLite also holds the checkpoint
saver's `sqlite3` connection; the PostgreSQL saver's): calls run there one at a time in order,
each a hop there and back (a queue put, the result sent back), and a call once made runs to its
end even when its caller is cancelled. The calls made while the batch queued last is not yet
taken by the thread join it: one queue put (and at most one wake-up of the thread) for a busy
stretch's calls, however many.

A hop to ENGINE, API, a request's thread or a `SerialThread` is a submit and one future, not
asgiref's `sync_to_async` (whose look-ups, shield and wrapped future cost about the hop itself;
what it does with the context is kept: `_hop`); its result comes back through the loop's
`LoopInbox` (`loop_inbox.py`: results ending while the loop is busy share one wake-up).
"""

from deerflow_site.bridge.hops import (
    API_DB_THREADS,
    ENGINE_THREAD,
    Executor,
    call_async,
    call_sync,
    callers_loop,
)
from deerflow_site.bridge.request_threads import (
    IDLE_REQUEST_THREADS,
    RequestThread,
    connection_upkeep,
    current_request_thread,
    ending_with_upkeep,
    request_thread,
)
from deerflow_site.bridge.serial import SerialThread

__all__ = [
    "API_DB_THREADS",
    "ENGINE_THREAD",
    "IDLE_REQUEST_THREADS",
    "Executor",
    "RequestThread",
    "SerialThread",
    "call_async",
    "call_sync",
    "callers_loop",
    "connection_upkeep",
    "current_request_thread",
    "ending_with_upkeep",
    "request_thread",
]
