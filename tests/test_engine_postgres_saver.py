"""The PostgreSQL checkpoint saver (runs/engine/postgres_saver.py): one hop per operation on a
thread of its own that owns one connection, writes that finish whatever happens to their caller,
a broken connection replaced, LangGraph's tables as LangGraph's async saver writes them."""

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from runs.engine.checkpointer import (
    POSTGRES_SETUP_LOCK_KEY,
    _database,
    _postgres_conninfo,
    _setup_postgres,
    get_checkpointer,
)
from runs.engine.checkpoints import acheckpoint_thread_ids, adelete_run_checkpoints
from runs.engine.postgres_saver import PostgresSaver, open_postgres_saver
from tests.engine_support import (
    Blocked,
    assert_a_cancelled_write_commits,
    put_checkpoint,
    queued,
    root_config,
)
from tests.waiting import read_until

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's saver"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("closing_checkpointer"),
]


async def postgres_saver() -> PostgresSaver:
    saver = await get_checkpointer()
    assert isinstance(saver, PostgresSaver)
    return saver


def backend_pid(cursor: Any) -> int:
    return cursor.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]


def terminate(backend: int) -> None:
    """End a backend as a restart of PostgreSQL does (its client finds out at its next call)."""
    with psycopg.connect(_postgres_conninfo(_database()), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))


async def test_a_write_whose_caller_is_cancelled_still_commits() -> None:
    await assert_a_cancelled_write_commits(await postgres_saver())


async def test_a_rollback_after_a_cancelled_write_finds_the_checkpoint() -> None:
    saver = await postgres_saver()
    t = f"t-{uuid.uuid4()}"
    await put_checkpoint(saver, t, run_id="run-1")
    with Blocked(saver.thread):
        write = await queued(put_checkpoint(saver, t, run_id="run-2"))
        write.cancel()
        rollback = await queued(adelete_run_checkpoints(t, "run-2"))

    await rollback
    remaining = [c.metadata["run_id"] async for c in saver.alist(root_config(t))]
    assert remaining == ["run-1"]


async def test_a_call_that_finds_the_connection_broken_is_made_again_on_a_new_one() -> None:
    saver = await postgres_saver()
    t = f"t-{uuid.uuid4()}"
    await put_checkpoint(saver, t)
    terminate(await saver.aexecute(backend_pid, transaction=False))

    # A read, then a write (what a run does next after PostgreSQL restarted), each finding
    # the connection broken.
    assert await saver.aget_tuple(root_config(t)) is not None
    terminate(await saver.aexecute(backend_pid, transaction=False))
    await put_checkpoint(saver, f"{t}-after")

    assert await saver.aget_tuple(root_config(f"{t}-after")) is not None
    assert await acheckpoint_thread_ids("no-such-checkpoint", excluding=t) == []


async def test_checkpoints_written_by_langgraphs_async_saver_are_read_as_they_were() -> None:
    saver = await postgres_saver()  # its tables made
    t = f"t-{uuid.uuid4()}"
    async with await psycopg.AsyncConnection.connect(
        _postgres_conninfo(_database()),
        autocommit=True,
        prepare_threshold=None,
        row_factory=dict_row,
    ) as conn:
        theirs = AsyncPostgresSaver(conn)
        stored = await put_checkpoint(theirs, t, run_id="theirs")
        await theirs.aput_writes(stored, [("channel", {"a": 1})], task_id="task-1")

    found = await saver.aget_tuple(root_config(t))

    assert found is not None and found.metadata["run_id"] == "theirs"
    assert found.pending_writes == [("task-1", "channel", {"a": 1})]


async def test_a_call_queued_behind_the_close_opens_no_connection() -> None:
    await postgres_saver()  # the tables made
    saver = await open_postgres_saver(_postgres_conninfo(_database()))
    with Blocked(saver.thread):
        closing = await queued(saver.aclose())
        late = await queued(saver.aget_tuple(root_config(f"t-{uuid.uuid4()}")))

    await closing
    with pytest.raises(RuntimeError, match="closed"):
        await late
    assert saver.conn.closed


async def test_the_saver_prepares_no_statements() -> None:
    # Behind a transaction-pooling PgBouncer a prepared statement may be gone at its next use.
    saver = await postgres_saver()
    t = f"t-{uuid.uuid4()}"
    for n in range(3):
        await put_checkpoint(saver, t, run_id=f"run-{n}")
        assert await saver.aget_tuple(root_config(t)) is not None
    prepared = await saver.aexecute(
        lambda cursor: cursor.execute(
            "SELECT count(*) AS n FROM pg_prepared_statements"
        ).fetchone(),
        transaction=False,
    )
    assert prepared["n"] == 0


async def test_setups_waiting_for_one_another_on_a_fresh_database_all_succeed() -> None:
    """Two processes' first use on a database without LangGraph's tables (a fresh deployment):
    both wait for the setup's lock, then one migrates (CREATE INDEX CONCURRENTLY) while the other
    still waits. A wait inside `pg_advisory_lock` deadlocked with that index build, and the run
    that opened the saver failed with DeadlockDetected (a loaded soak's worker did)."""
    base = _postgres_conninfo(_database())
    schema = f"fresh_{uuid.uuid4().hex[:12]}"
    fresh = make_conninfo(base, options=f"-c search_path={schema}")
    async with await psycopg.AsyncConnection.connect(
        base, autocommit=True, row_factory=dict_row
    ) as admin:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            await admin.execute("SELECT pg_advisory_lock(%s)", (POSTGRES_SETUP_LOCK_KEY,))
            setups = [asyncio.create_task(_setup_postgres(fresh)) for _ in range(2)]

            async def asking() -> int:
                found = await admin.execute(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                    " AND datname = current_database() AND query LIKE %s",
                    ("%advisory_lock(%",),
                )
                return (await found.fetchone())["n"]

            await read_until(asking, "both set-ups to ask for the lock", accept=lambda n: n >= 2)
            await admin.execute("SELECT pg_advisory_unlock(%s)", (POSTGRES_SETUP_LOCK_KEY,))

            await asyncio.gather(*setups)

            made = await admin.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
            assert {row["table_name"] for row in await made.fetchall()} >= {
                "checkpoints",
                "checkpoint_blobs",
                "checkpoint_writes",
                "checkpoint_migrations",
            }
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
