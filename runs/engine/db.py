"""Database calls from the engine's event loop, on the engine's own thread.

The worker's ORM calls run one at a time on a thread of their own, which keeps its connection
between calls (a worker has no requests to scope a connection by) and drops it only when it has
failed (the next call reconnects). Not Django's thread-sensitive default thread: outside a
request's context that thread is shared with the request signals of long responses, whose
`close_old_connections` would close the worker's connection at every request.
"""

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, InterfaceError, connection

P = ParamSpec("P")
T = TypeVar("T")

_engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-engine-db")


def in_database(function: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`function` (sync ORM code) as a coroutine, run on the engine's database thread."""

    @wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except (DatabaseError, InterfaceError):
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            raise

    return sync_to_async(call, thread_sensitive=False, executor=_engine_thread)
