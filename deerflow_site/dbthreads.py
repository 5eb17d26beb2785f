"""ORM work of async views, on a small pool of threads that keep their database connections.

Long responses (streams, waits, joins) must not pin a thread and a database connection each for
their whole life, and graphs' own executor work must not wait on them. Django's thread-sensitive
default would also share one thread with whatever else runs outside a request's context, whose
connection Django closes at every request's start and end.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

#: Bounds the database connections that async views use, whatever the number of open streams.
DB_THREADS = 8

_db_threads = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="api-db")


async def db(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(**kwargs)` (sync ORM code) on the pool."""
    return await sync_to_async(
        _with_fresh_connection_on_failure, thread_sensitive=False, executor=_db_threads
    )(fn, kwargs)


def _with_fresh_connection_on_failure(fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    try:
        return fn(**kwargs)
    except (InterfaceError, OperationalError):
        connection.close()  # the pool thread keeps its connection: reconnect next time
        raise
