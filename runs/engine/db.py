"""Database calls from the engine's event loop.

Channels' `database_sync_to_async` closes the connection around every call when CONN_MAX_AGE
is 0 (the default here), which costs a new PostgreSQL connection per claim, renewal and finish.
A worker has no requests to scope its connection by, so it keeps it between calls, and drops it
only when it has failed (the next call reconnects).
"""

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, InterfaceError, connection

P = ParamSpec("P")
T = TypeVar("T")


def in_database(function: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`function` (sync ORM code) as a coroutine, run in the thread Django's sync code uses."""

    @wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except (DatabaseError, InterfaceError):
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            raise

    return sync_to_async(call, thread_sensitive=True)
