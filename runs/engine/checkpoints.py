"""Operations on a thread's checkpoints beyond what LangGraph's savers offer: is a checkpoint
there (on this thread, on another), copy a thread's, delete a run's, delete a thread's.

The savers come from `checkpointer.py` (the only module that opens them). The SQL of each
backend is here as named constants, side by side; the tables are LangGraph's own
(`langgraph-checkpoint-sqlite`: checkpoints, writes; `-postgres`: checkpoints,
checkpoint_blobs, checkpoint_writes).
"""

from collections import defaultdict
from typing import Any

from django.db import connection
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from psycopg.types.json import Jsonb

from runs.engine.checkpointer import get_checkpointer
from runs.engine.postgres_saver import PostgresSaver
from runs.engine.sqlite_saver import SqliteSaver

# --- SQLite (sqlite3, `?` parameters) ---------------------------------------------------------

SQLITE_TABLES = ("checkpoints", "writes")
SQLITE_RUN_CHECKPOINT_IDS = (
    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? "
    "AND json_extract(CAST(metadata AS TEXT), '$.run_id') = ?"
)
SQLITE_DELETE_RUN_WRITES = (
    f"DELETE FROM writes WHERE thread_id = ? AND checkpoint_id IN ({SQLITE_RUN_CHECKPOINT_IDS})"
)
SQLITE_DELETE_RUN_CHECKPOINTS = (
    "DELETE FROM checkpoints WHERE thread_id = ? "
    "AND json_extract(CAST(metadata AS TEXT), '$.run_id') = ?"
)
SQLITE_CHECKPOINT_THREADS = (
    "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_id = ? AND thread_id <> ? LIMIT ?"
)

# --- PostgreSQL (psycopg, `%s` parameters) ------------------------------------------------------

POSTGRES_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
POSTGRES_DELETE_RUN_WRITES = (
    "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id IN ("
    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND metadata @> %s)"
)
POSTGRES_DELETE_RUN_CHECKPOINTS = "DELETE FROM checkpoints WHERE thread_id = %s AND metadata @> %s"
POSTGRES_CHECKPOINT_THREADS = (
    "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_id = %s AND thread_id <> %s "
    "LIMIT %s"
)

# --- Either backend, on Django's connection (`%s`: Django converts it for SQLite) -------------

DELETE_THREADS_ROWS = "DELETE FROM {table} WHERE thread_id IN ({placeholders})"
ORPHAN_THREAD_IDS = (
    "SELECT DISTINCT c.thread_id FROM {table} c WHERE c.thread_id > %s "
    "AND NOT EXISTS (SELECT 1 FROM {thread_table} t WHERE t.thread_id = c.thread_id) "
    "ORDER BY c.thread_id LIMIT %s"
)


async def acheckpoint_exists(*, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> bool:
    """Whether the thread has this checkpoint (in namespace `checkpoint_ns`, "" the root): read
    without its values (one that does not load exists too)."""
    saver = await get_checkpointer()
    config = {
        "configurable": {
            "thread_id": str(thread_id),
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }
    return bool(await saver.alist_ids(config, limit=1))


async def acheckpoint_thread_ids(
    checkpoint_id: str, *, excluding: str, limit: int = 20
) -> list[str]:
    """The ids of threads other than `excluding` holding a checkpoint with this id (at most
    `limit`): a fork across threads. The caller decides which of them the user may know of."""
    saver = await get_checkpointer()
    params = (str(checkpoint_id), str(excluding), limit)
    if isinstance(saver, PostgresSaver):
        return await saver.aexecute(
            lambda cursor: [
                row["thread_id"]
                for row in cursor.execute(POSTGRES_CHECKPOINT_THREADS, params).fetchall()
            ],
            transaction=False,
        )
    assert isinstance(saver, SqliteSaver)
    return await saver.aexecute(
        lambda cursor: [row[0] for row in cursor.execute(SQLITE_CHECKPOINT_THREADS, params)],
        transaction=False,
    )


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
    """Remove every checkpoint and write of a thread, from sync code, in the caller's transaction.

    Uses Django's connection to the same database, so that deleting a thread row and its
    checkpoints is one transaction (a saver commits on its own connection, and on SQLite it
    would wait on the caller's write lock).
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
                DELETE_THREADS_ROWS.format(table=table, placeholders=placeholders),
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
                ORPHAN_THREAD_IDS.format(table=table, thread_table=thread_table), [after, limit]
            )
            ids.update(row[0] for row in cursor.fetchall())
    return sorted(ids)[:limit]


async def adelete_run_checkpoints(thread_id: str, run_id: str) -> None:
    """Remove the checkpoints a run wrote (metadata run_id) and their writes: a rollback."""
    saver = await get_checkpointer()
    thread_id, run_id = str(thread_id), str(run_id)
    of_run: Any
    if isinstance(saver, PostgresSaver):
        # Blobs stay: their versions carry a random part, so no later checkpoint can pick them
        # up, and they go with the thread.
        writes, checkpoints = POSTGRES_DELETE_RUN_WRITES, POSTGRES_DELETE_RUN_CHECKPOINTS
        of_run = Jsonb({"run_id": run_id})
    elif isinstance(saver, SqliteSaver):
        writes, checkpoints = SQLITE_DELETE_RUN_WRITES, SQLITE_DELETE_RUN_CHECKPOINTS
        of_run = run_id
    else:  # pragma: no cover - only the two savers above are ever opened
        raise TypeError(f"unsupported checkpoint saver {type(saver).__name__}")

    def delete(cursor: Any) -> None:
        cursor.execute(writes, (thread_id, thread_id, of_run))
        cursor.execute(checkpoints, (thread_id, of_run))

    # One call in one transaction, after any write of the run still in flight (the saver's
    # thread keeps order).
    await saver.aexecute(delete)


async def acopy_thread_checkpoints(source_thread_id: str, target_thread_id: str) -> None:
    """Copy every checkpoint (all namespaces) and pending write of a thread to another thread,
    oldest first (checkpoint ids are time-ordered), so that parents exist before children and
    a copy cut short holds the start of the history. Memory: the history's keys, and one
    checkpoint (or one page of the saver's `alist`) at a time."""
    saver = await get_checkpointer()
    source = str(source_thread_id)
    keys = [
        (checkpoint.config["configurable"].get("checkpoint_ns", ""), checkpoint.checkpoint["id"])
        async for checkpoint in saver.alist({"configurable": {"thread_id": source}})
    ]
    for namespace, checkpoint_id in reversed(keys):
        config = {
            "configurable": {
                "thread_id": source,
                "checkpoint_ns": namespace,
                "checkpoint_id": checkpoint_id,
            }
        }
        checkpoint = await saver.aget_tuple(config)
        if checkpoint is not None:  # gone meanwhile (a rollback): nothing to copy
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
