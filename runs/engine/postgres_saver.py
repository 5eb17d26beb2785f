"""The PostgreSQL checkpoint saver: LangGraph's sync `PostgresSaver`, its async methods each one
hop.

LangGraph's `AsyncPostgresSaver` on a psycopg pool takes its own lock around every operation
(so a process's checkpoint operations run one at a time whatever the pool's size), borrows a
pool connection, hands the serialisation of each write to `asyncio.to_thread` and waits for
each statement on the event loop: several hops and wake-ups per operation. This saver keeps
LangGraph's sync implementation (same tables, same SQL, same serialisation, pipeline mode for
writes) on one psycopg connection owned by a thread of its own
(`deerflow_site.bridge.SerialThread`): each whole operation is one call there and back.

The thread runs the calls one at a time, in order, and a call once made runs to its end: a
checkpoint write finishes even when its run is cancelled meanwhile, and a rollback made after a
write finds what it wrote. A call that finds the connection broken (PostgreSQL restarted, a
network cut) is made once more on a new connection: every call may be repeated (reads,
LangGraph's upserts and deletes, or statements in one transaction, which the break rolled
back), and the runs going on when PostgreSQL restarts write their next checkpoints rather than
end `error`. The new connection is tried for up to RECONNECT_SECONDS (a restart takes a few);
should it not come, or the call fail again, so does the call.
"""

import time
from collections.abc import Callable
from typing import Any, TypeVar

from langgraph.checkpoint.postgres import PostgresSaver as LangGraphPostgresSaver
from psycopg import Connection, Cursor, OperationalError
from psycopg.rows import DictRow, dict_row

from deerflow_site.bridge import SerialThread
from runs.engine.serial_saver import CheckpointSerializer, SerialSaverMethods

T = TypeVar("T")

#: How long a call that found its connection broken tries to connect again (seconds).
RECONNECT_SECONDS = 15.0
RECONNECT_PAUSE_SECONDS = 0.25


def connect(conninfo: str) -> Connection[DictRow]:
    """A connection as LangGraph's savers want it: autocommit, rows as dicts, no prepared
    statements (psycopg's `prepare_threshold=None`; 0 would prepare every statement at once), so
    it works behind a transaction-pooling PgBouncer."""
    return Connection.connect(
        conninfo, autocommit=True, prepare_threshold=None, row_factory=dict_row
    )


class PostgresSaver(SerialSaverMethods, LangGraphPostgresSaver):
    """LangGraph's PostgreSQL saver with async methods, each operation one call on `thread`.

    `bound_graphs`: graph id -> the graph bound to this saver (registry.graph_for_thread's
    cache). Open one with `open_postgres_saver`.
    """

    def __init__(self, conn: Connection[DictRow], thread: SerialThread, conninfo: str) -> None:
        super().__init__(conn, serde=CheckpointSerializer())
        self.thread = thread
        self.conninfo = conninfo
        self.bound_graphs: dict[str, Any] = {}
        self._closed = False  # read and written on `thread` only

    def _op(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """`fn` on the saver's thread, on a live connection (a closed or broken one replaced).
        RuntimeError once the saver is closed: a call queued behind the close opens nothing."""
        if self._closed:
            raise RuntimeError("the checkpoint saver is closed")
        if self.conn.closed:  # psycopg closes a connection whose server went away
            self.conn = connect(self.conninfo)
        try:
            return fn(*args, **kwargs)
        except OperationalError:
            if not (self.conn.broken or self.conn.closed):
                raise
        self._reconnect()
        return fn(*args, **kwargs)

    def _reconnect(self) -> None:
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                self.conn = connect(self.conninfo)
                return
            except OperationalError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(RECONNECT_PAUSE_SECONDS)

    async def aexecute(
        self, statements: Callable[[Cursor[DictRow]], T], *, transaction: bool = True
    ) -> T:
        """`statements(cursor)` in one call on the saver's connection, in one transaction when
        `transaction` (what `checkpoints.py` does beyond LangGraph's methods)."""

        def run() -> T:
            if not transaction:
                with self.conn.cursor() as cursor:
                    return statements(cursor)
            with self.conn.transaction(), self.conn.cursor() as cursor:
                return statements(cursor)

        return await self._call(run)

    def _close(self) -> None:
        self._closed = True
        self.conn.close()


async def open_postgres_saver(conninfo: str) -> PostgresSaver:
    """A saver on the database `conninfo` (libpq connection string), whose tables exist
    (`checkpointer._setup_postgres` makes them, one process at a time)."""
    thread = SerialThread(name="checkpoints-postgres")
    try:
        conn = await thread.call(connect, conninfo)
    except BaseException:
        thread.stop()
        raise
    return PostgresSaver(conn, thread, conninfo)
