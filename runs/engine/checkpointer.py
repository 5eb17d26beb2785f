"""LangGraph's checkpoint savers on Django's own database: the only module that opens them.

One saver per running event loop (the savers hold loop-bound locks and connections): an
`AsyncPostgresSaver` on a psycopg pool, or an `AsyncSqliteSaver` on the same SQLite file as Django.
Entries of closed loops are dropped when the next saver is made. What the savers do not offer
(copying a thread, deleting one run's checkpoints, deleting from sync code) is done here, with the
SQL of each backend kept side by side.
"""

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite
from django.conf import settings
from django.db import connection, connections
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

SQLITE_TABLES = ("checkpoints", "writes")
POSTGRES_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
# Serialises the savers' schema migrations across processes (pg_advisory_lock key).
POSTGRES_SETUP_LOCK_KEY = 0x64656572666C6F77  # "deerflow"


class _WriteToTheEnd:
    """Checkpoint writes finish even when the run is cancelled meanwhile.

    An SQLite INSERT cancelled before its COMMIT would keep the database's write lock on the
    shared connection; and a rollback must find every checkpoint its run wrote (it takes the
    saver's lock, behind any write in flight). Also the home of the graphs bound to the saver.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: graph id -> the graph bound to this saver (registry.graph_for_thread's cache)
        self.bound_graphs: dict[str, Any] = {}

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.shield(super().aput(*args, **kwargs))  # type: ignore[misc]

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.shield(super().aput_writes(*args, **kwargs))  # type: ignore[misc]

    async def adelete_thread(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.shield(super().adelete_thread(*args, **kwargs))  # type: ignore[misc]


class SqliteSaver(_WriteToTheEnd, AsyncSqliteSaver):
    """LangGraph's SQLite saver whose writes survive cancellation."""


class PostgresSaver(_WriteToTheEnd, AsyncPostgresSaver):
    """LangGraph's PostgreSQL saver whose writes survive cancellation."""


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
    """Django's default database settings (the test database's during tests)."""
    return connections["default"].settings_dict


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
    conn = aiosqlite.connect(str(database["NAME"]), timeout=20)
    # A daemon thread, so that a saver left behind on a closed loop never blocks interpreter exit.
    conn._thread.daemon = True
    await conn
    await conn.executescript(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
    )
    saver = SqliteSaver(conn)
    await saver.setup()

    async def close() -> None:
        async with saver.lock:  # behind writes still in flight (a cancelled run's)
            await conn.close()

    def abandon() -> None:
        # stop() answers on the current thread's loop if it has one, which may close first:
        # from a thread without a loop it just closes the connection and ends its thread.
        threading.Thread(target=conn.stop, daemon=True).start()

    return _Entry(saver=saver, database=key, close=close, abandon=abandon)


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
    pool = AsyncConnectionPool(
        conninfo,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        min_size=1,
        max_size=settings.CHECKPOINT_POOL_SIZE,
        open=False,
        name="deerflow-checkpoints",
    )
    await pool.open(wait=True)
    saver = PostgresSaver(pool)

    async def close() -> None:
        async with saver.lock:
            await pool.close()

    def abandon() -> None:
        # The loop that owns the pool is closed: nothing can be awaited, the GC closes sockets.
        pass

    return _Entry(saver=saver, database=key, close=close, abandon=abandon)


async def _setup_postgres(conninfo: str) -> None:
    """Create or migrate the saver's tables once per process, one process at a time."""
    async with await AsyncConnection.connect(
        conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (POSTGRES_SETUP_LOCK_KEY,))
        try:
            await AsyncPostgresSaver(conn).setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (POSTGRES_SETUP_LOCK_KEY,))


# --- Deleting and copying ------------------------------------------------------------------


async def adelete_thread_checkpoints(thread_id: str) -> None:
    """Remove every checkpoint and write of a thread."""
    saver = await get_checkpointer()
    await saver.adelete_thread(thread_id)


def _saver_tables() -> list[str]:
    """The saver's tables that exist on Django's connection (none before any graph ran);
    `checkpoints` first."""
    tables = POSTGRES_TABLES if connection.vendor == "postgresql" else SQLITE_TABLES
    existing = set(connection.introspection.table_names())
    return [table for table in tables if table in existing]


def delete_thread_checkpoints(thread_id: str) -> None:
    """Remove every checkpoint and write of a thread, from sync code (views, services, tests).

    Uses Django's connection to the same database, so it works in any thread without an event
    loop of its own, and inside the caller's transaction.
    """
    delete_checkpoints_of_threads([str(thread_id)])


def delete_checkpoints_of_threads(thread_ids: list[str]) -> int:
    """Remove every checkpoint, blob and write of these threads, in the caller's transaction;
    returns how many checkpoints (rows of `checkpoints`, all namespaces) went."""
    if not thread_ids:
        return 0
    deleted = 0
    placeholders = ", ".join(["%s"] * len(thread_ids))
    with connection.cursor() as cursor:
        for table in _saver_tables():
            cursor.execute(
                f"DELETE FROM {table} WHERE thread_id IN ({placeholders})",
                [str(thread_id) for thread_id in thread_ids],
            )
            if table == "checkpoints":
                deleted = cursor.rowcount
    return deleted


def orphan_checkpoint_thread_ids(*, thread_table: str, after: str, limit: int) -> list[str]:
    """Up to `limit` thread ids, in order past `after`, that have checkpoints, blobs or writes
    but no row in `thread_table` (the threads' table): what a failed copy or delete left."""
    ids: set[str] = set()
    with connection.cursor() as cursor:
        for table in _saver_tables():
            cursor.execute(
                f"SELECT DISTINCT c.thread_id FROM {table} c WHERE c.thread_id > %s "
                f"AND NOT EXISTS (SELECT 1 FROM {thread_table} t WHERE t.thread_id = c.thread_id) "
                "ORDER BY c.thread_id LIMIT %s",
                [after, limit],
            )
            ids.update(row[0] for row in cursor.fetchall())
    return sorted(ids)[:limit]


async def adelete_run_checkpoints(thread_id: str, run_id: str) -> None:
    """Remove the checkpoints a run wrote (metadata run_id) and their writes: a rollback."""
    saver = await get_checkpointer()
    thread_id, run_id = str(thread_id), str(run_id)
    if isinstance(saver, AsyncPostgresSaver):
        await _delete_run_postgres(saver, thread_id, run_id)
    elif isinstance(saver, AsyncSqliteSaver):
        await _delete_run_sqlite(saver, thread_id, run_id)
    else:  # pragma: no cover - only the two savers above are ever opened
        raise TypeError(f"unsupported checkpoint saver {type(saver).__name__}")


async def _delete_run_sqlite(saver: AsyncSqliteSaver, thread_id: str, run_id: str) -> None:
    await saver.setup()
    of_run = (
        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? "
        "AND json_extract(CAST(metadata AS TEXT), '$.run_id') = ?"
    )
    async with saver.lock:
        await saver.conn.execute(
            f"DELETE FROM writes WHERE thread_id = ? AND checkpoint_id IN ({of_run})",
            (thread_id, thread_id, run_id),
        )
        await saver.conn.execute(
            "DELETE FROM checkpoints WHERE thread_id = ? "
            "AND json_extract(CAST(metadata AS TEXT), '$.run_id') = ?",
            (thread_id, run_id),
        )
        await saver.conn.commit()


async def _delete_run_postgres(saver: AsyncPostgresSaver, thread_id: str, run_id: str) -> None:
    # Blobs stay: their versions carry a random part, so no later checkpoint can pick them up,
    # and they go with the thread.
    of_run = Jsonb({"run_id": run_id})
    async with saver.lock, saver.conn.connection() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id IN ("
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND metadata @> %s)",
            (thread_id, thread_id, of_run),
        )
        await conn.execute(
            "DELETE FROM checkpoints WHERE thread_id = %s AND metadata @> %s",
            (thread_id, of_run),
        )


async def acheckpoint_on_other_thread(checkpoint_id: str, thread_id: str) -> bool:
    """Whether a checkpoint with this id exists on some other thread (a fork across threads)."""
    saver = await get_checkpointer()
    query = "SELECT 1 FROM checkpoints WHERE checkpoint_id = {0} AND thread_id <> {0} LIMIT 1"
    params = (str(checkpoint_id), str(thread_id))
    if isinstance(saver, AsyncPostgresSaver):
        async with saver.conn.connection() as conn:
            cursor = await conn.execute(query.format("%s"), params)
            return await cursor.fetchone() is not None
    await saver.setup()
    async with saver.lock, saver.conn.execute(query.format("?"), params) as cursor:
        return await cursor.fetchone() is not None


async def acopy_thread_checkpoints(source_thread_id: str, target_thread_id: str) -> None:
    """Copy every checkpoint (all namespaces) and pending write of a thread to another thread."""
    saver = await get_checkpointer()
    tuples = [
        checkpoint
        async for checkpoint in saver.alist({"configurable": {"thread_id": str(source_thread_id)}})
    ]
    # Oldest first (checkpoint ids are time-ordered), so that parents exist before children.
    for checkpoint in reversed(tuples):
        await _copy_one(saver, checkpoint, str(target_thread_id))


async def _copy_one(saver: BaseCheckpointSaver, source: CheckpointTuple, target: str) -> None:
    namespace = source.config["configurable"].get("checkpoint_ns", "")
    parent_id = (source.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    put_config: dict[str, Any] = {"configurable": {"thread_id": target, "checkpoint_ns": namespace}}
    if parent_id:
        put_config["configurable"]["checkpoint_id"] = parent_id
    stored = await saver.aput(
        put_config,
        source.checkpoint,
        source.metadata,
        dict(source.checkpoint.get("channel_versions", {})),
    )
    writes_by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for task_id, channel, value in source.pending_writes or []:
        writes_by_task[task_id].append((channel, value))
    for task_id, writes in writes_by_task.items():
        await saver.aput_writes(stored, writes, task_id)
