"""The PostgreSQL checkpointer's floor: the echo graph in-process, CPU per run, with LangGraph's
`AsyncPostgresSaver` on a psycopg pool against ours (`runs.engine.postgres_saver`).

    .venv/bin/python scripts/services.py -- .venv/bin/python bench/checkpointer_postgres.py \
        [--runs 500] [--rounds 3] [--concurrency 1] [--prepare-threshold N]

Each run is what `bench/checkpointer.py` measures for SQLite (`astream`, then the thread's
state), on the PostgreSQL of DATABASE_URL, `--concurrency` runs at a time (a worker runs up to
DEERFLOW_WORKER_CONCURRENCY, 10 by default). `--prepare-threshold` is psycopg's for our saver's
connection: a statement is prepared at its N-th run (0: at its first); without it, none is
(psycopg's None, the server's setting).
"""

import argparse
import asyncio
import os
import sys
import time
from typing import Any

if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    sys.exit("DATABASE_URL must name a PostgreSQL database (run through scripts/services.py)")

import checkpointer as floor  # sets Django up first
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from deerflow_site.bridge import SerialThread
from runs.engine import postgres_saver
from runs.engine.checkpointer import _database, _postgres_conninfo, _setup_postgres

CONNECTION = {"autocommit": True, "prepare_threshold": None, "row_factory": dict_row}


async def langgraph_saver(_path: str) -> tuple[Any, list[str]]:
    pool = AsyncConnectionPool(
        _postgres_conninfo(_database()), kwargs=CONNECTION, min_size=1, max_size=10, open=False
    )
    await pool.open(wait=True)
    return AsyncPostgresSaver(pool), []


def our_saver_with(prepare_threshold: int | None) -> Any:
    async def our_saver(_path: str) -> tuple[Any, list[str]]:
        conninfo = _postgres_conninfo(_database())
        thread = SerialThread(name="checkpoints-postgres")
        conn = await thread.call(
            lambda: Connection.connect(
                conninfo, **{**CONNECTION, "prepare_threshold": prepare_threshold}
            )
        )
        return postgres_saver.PostgresSaver(conn, thread, conninfo), []

    return our_saver


async def measure(name: str, open_saver: Any, runs: int, concurrency: int) -> float:
    """CPU seconds per run (every thread of this process), `concurrency` runs at a time."""
    saver, _ = await open_saver("")
    graph = floor.echo_graph.copy(update={"checkpointer": saver})

    async def batch(first: int, count: int) -> None:
        await asyncio.gather(*(floor.run_echo(graph, first + i) for i in range(count)))

    await batch(0, 50)  # warm-up
    cpu = time.process_time()
    for first in range(0, runs, concurrency):
        await batch(first, min(concurrency, runs - first))
    cpu = (time.process_time() - cpu) / runs
    await (saver.aclose() if hasattr(saver, "aclose") else saver.conn.close())
    print(f"{name:>24}: {1000 * cpu:.3f} ms CPU per run, {concurrency} at a time")
    return cpu


async def main(runs: int, rounds: int, concurrency: int, prepare_threshold: int | None) -> None:
    await _setup_postgres(_postgres_conninfo(_database()))
    ours_saver = our_saver_with(prepare_threshold)
    ratios = []
    for _ in range(rounds):
        theirs = await measure("AsyncPostgresSaver", langgraph_saver, runs, concurrency)
        ours = await measure("ours (one hop per call)", ours_saver, runs, concurrency)
        ratios.append(ours / theirs)
    print("ours / AsyncPostgresSaver, CPU per run:", ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--prepare-threshold", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.rounds, args.concurrency, args.prepare_threshold))
