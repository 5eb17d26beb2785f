"""The SQLite checkpoint saver: LangGraph's sync `SqliteSaver`, its async methods each one hop.

LangGraph's `AsyncSqliteSaver` runs on aiosqlite, where every statement, fetch and commit is its
own hop to aiosqlite's thread and back (a put is four, a read with its pending writes six or
more). This saver keeps LangGraph's sync implementation (same tables, same SQL, same
serialisation: existing databases keep working) and runs each whole operation, its statements
and its commit, as one call on a thread of its own that owns the `sqlite3` connection
(`deerflow_site.bridge.SerialThread`). Not inline on the event loop: a write waits up to the
busy timeout while Django's threads hold SQLite's write lock, and the loop must not.

The thread runs the calls one at a time, in order, and a call once made runs to its end: a
checkpoint write finishes even when its run is cancelled meanwhile (an INSERT cancelled before
its COMMIT would keep the write lock), and a rollback made after a write finds what it wrote.
"""

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver as LangGraphSqliteSaver

from deerflow_site.bridge import SerialThread
from runs.engine.serial_saver import CheckpointSerializer, SerialSaverMethods

T = TypeVar("T")

#: The connection's settings: WAL (readers never wait on the writer), fsync at checkpoints only
#: (LangGraph's and Django's SQLite default here), and how long a write waits for the lock.
PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout={ms};"


class SqliteSaver(SerialSaverMethods, LangGraphSqliteSaver):
    """LangGraph's SQLite saver with async methods, each operation one call on `thread`.

    `bound_graphs`: graph id -> the graph bound to this saver (registry.graph_for_thread's
    cache). Open one with `open_sqlite_saver`.
    """

    def __init__(self, conn: sqlite3.Connection, thread: SerialThread) -> None:
        super().__init__(conn, serde=CheckpointSerializer())
        self.thread = thread
        self.bound_graphs: dict[str, Any] = {}

    async def aexecute(
        self, statements: Callable[[sqlite3.Cursor], T], *, transaction: bool = True
    ) -> T:
        """`statements(cursor)` in one call on the saver's connection, committed after it when
        `transaction` (what `checkpoints.py` does beyond LangGraph's methods)."""

        def run() -> T:
            with self.cursor(transaction=transaction) as cursor:
                return statements(cursor)

        return await self._call(run)


async def open_sqlite_saver(
    path: str, *, busy_timeout: float, thread: SerialThread | None = None
) -> SqliteSaver:
    """A saver on the SQLite file `path` (tables made or migrated); `busy_timeout` in seconds.
    Its calls run on `thread`, shared with others and left running when the saver closes; on a
    thread of its own (ended with the saver) when None."""
    owns_thread = thread is None
    if thread is None:
        thread = SerialThread(name="checkpoints-sqlite")

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False)
        conn.executescript(PRAGMAS.format(ms=int(busy_timeout * 1000)))
        return conn

    try:
        conn = await thread.call(connect)
    except BaseException:
        if owns_thread:
            thread.stop()
        raise
    saver = SqliteSaver(conn, thread)
    saver.owns_thread = owns_thread
    try:
        await thread.call(saver.setup)
    except BaseException:
        saver.abandon()
        raise
    return saver
