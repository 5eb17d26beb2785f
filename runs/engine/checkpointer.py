"""LangGraph's checkpoint savers on Django's own database: the only module that opens them.

One saver per running event loop (each answers on its loop): our `PostgresSaver`
(`postgres_saver.py`) or `SqliteSaver` (`sqlite_saver.py`), LangGraph's sync savers whose
operations are each one hop to a thread of their own that owns the connection (PostgreSQL's or
the SQLite file Django uses).
Entries of closed loops are dropped when the next saver is made. What is done with checkpoints
beyond what LangGraph does itself (copying a thread, deleting a run's) is `checkpoints.py`.
"""

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from deerflow_site.bridge import ENGINE_THREAD
from runs.engine.postgres_saver import open_postgres_saver
from runs.engine.sqlite_saver import open_sqlite_saver

logger = logging.getLogger(__name__)

# Serialises the savers' schema migrations across processes (pg_advisory_lock key).
POSTGRES_SETUP_LOCK_KEY = 0x64656572666C6F77  # "deerflow"
#: How long (seconds) a checkpoint write waits for SQLite's write lock.
SQLITE_BUSY_TIMEOUT = 20.0


@dataclass
class _Entry:
    saver: BaseCheckpointSaver
    database: str
    close: Callable[[], Awaitable[None]]
    abandon: Callable[[], None]


_entries: dict[asyncio.AbstractEventLoop, _Entry] = {}
_creating: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
_entries_lock = threading.Lock()
_postgres_ready: set[str] = set()


def _database() -> dict[str, Any]:
    """Django's default database settings (the test database's during tests).

    The dict every connection to it is made from (`connections[alias].settings_dict` is this
    very dict), read without `connections["default"]`, which on an event loop builds a new
    `DatabaseWrapper` for each task's context.
    """
    return connections.settings["default"]


def _database_key(database: dict[str, Any]) -> str:
    return f"{database['ENGINE']}|{database.get('HOST')}|{database.get('PORT')}|{database['NAME']}"


async def get_checkpointer() -> BaseCheckpointSaver:
    """The checkpoint saver of the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    database = _database()
    key = _database_key(database)
    entry = _entries.get(loop)
    if entry is not None and entry.database == key:
        return entry.saver
    with _entries_lock:
        creating = _creating.setdefault(loop, asyncio.Lock())
    async with creating:
        entry = _entries.get(loop)
        if entry is not None and entry.database == key:
            return entry.saver
        if entry is not None:
            await entry.close()
        entry = await _open(database, key)
        with _entries_lock:
            _drop_closed_loops()
            _entries[loop] = entry
        return entry.saver


async def close_checkpointer() -> None:
    """Close the running loop's saver (a worker's shutdown, a test's teardown)."""
    loop = asyncio.get_running_loop()
    with _entries_lock:
        entry = _entries.pop(loop, None)
        _creating.pop(loop, None)
    if entry is not None:
        await entry.close()


def _drop_closed_loops() -> None:
    for loop in [loop for loop in _entries if loop.is_closed()]:
        _entries.pop(loop).abandon()
        _creating.pop(loop, None)
    for loop in [loop for loop in _creating if loop.is_closed()]:
        _creating.pop(loop, None)


async def _open(database: dict[str, Any], key: str) -> _Entry:
    if database["ENGINE"] == "django.db.backends.postgresql":
        return await _open_postgres(database, key)
    return await _open_sqlite(database, key)


async def _open_sqlite(database: dict[str, Any], key: str) -> _Entry:
    saver = await open_sqlite_saver(
        str(database["NAME"]), busy_timeout=SQLITE_BUSY_TIMEOUT, thread=ENGINE_THREAD
    )
    return _Entry(saver=saver, database=key, close=saver.aclose, abandon=saver.abandon)


def _postgres_conninfo(database: dict[str, Any]) -> str:
    params = {
        "dbname": database["NAME"],
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "host": database.get("HOST") or None,
        "port": str(database["PORT"]) if database.get("PORT") else None,
    }
    options = {k: v for k, v in (database.get("OPTIONS") or {}).items() if isinstance(v, str)}
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None}, **options)


async def _open_postgres(database: dict[str, Any], key: str) -> _Entry:
    conninfo = _postgres_conninfo(database)
    if key not in _postgres_ready:
        await _setup_postgres(conninfo)
        _postgres_ready.add(key)
    saver = await open_postgres_saver(conninfo)
    return _Entry(saver=saver, database=key, close=saver.aclose, abandon=saver.abandon)


async def _setup_postgres(conninfo: str) -> None:
    """Create or migrate the saver's tables once per process, one process at a time."""
    async with await AsyncConnection.connect(
        conninfo, autocommit=True, prepare_threshold=None, row_factory=dict_row
    ) as conn:
        await _take_setup_lock(conn)
        try:
            await AsyncPostgresSaver(conn).setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (POSTGRES_SETUP_LOCK_KEY,))


async def _take_setup_lock(conn: AsyncConnection[Any]) -> None:
    """Take the setup's session advisory lock, trying again with a growing pause (50 ms to 1 s).

    Not `pg_advisory_lock`: a session blocked in it stays inside a statement, holding a snapshot,
    and the holder's migrations include CREATE INDEX CONCURRENTLY, which waits for every older
    snapshot to go: PostgreSQL then breaks the deadlock by failing one of them (DeadlockDetected,
    and the run that opened the saver failed). A refused `pg_try_advisory_lock` ends at once.
    """
    pause = 0.05
    while True:
        cursor = await conn.execute(
            "SELECT pg_try_advisory_lock(%s) AS locked", (POSTGRES_SETUP_LOCK_KEY,)
        )
        row = await cursor.fetchone()
        if row is not None and row["locked"]:
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
