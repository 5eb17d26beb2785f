"""The checkpointer's floor: the echo graph (`bench/graph.py`) in-process, CPU per run, with
LangGraph's `AsyncSqliteSaver` (aiosqlite) against ours (`runs.engine.sqlite_saver`).

    .venv/bin/python bench/checkpointer.py [--runs 2000] [--rounds 3] [--ends]

Each run is what the worker does with the graph: `astream` (values, subgraphs) on a thread of
its own, then the thread's state (`aget_state`, the final snapshot); no Django, no HTTP. Both
savers use the same settings (WAL, `synchronous=NORMAL`, a busy timeout) on a fresh file each.
Prints CPU ms per run (`time.process_time`, every thread of the process), SQL statements and
hops to the saver's thread per run, and the ratio, for the savers in alternating rounds.

`--ends` compares, on our saver, the two ways a run's end gets its thread's state: read back
(`finish.snapshot_of`: `aget_state`) or taken from the run's last `values` chunk
(`final_state.FinalState`, what the worker does for a run that went to its end).
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.update(
    DJANGO_SETTINGS_MODULE="deerflow_site.settings",
    SECRET_KEY="bench-checkpointer-secret-key",
    DEERFLOW_VAR_DIR=tempfile.mkdtemp(prefix="deerflow-ckpt-"),
)
import django  # noqa: E402

django.setup()  # runs.engine imports Django's models

import aiosqlite  # noqa: E402
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: E402

from bench.graph import graph as echo_graph  # noqa: E402
from deerflow_site.bridge import SerialThread  # noqa: E402
from runs.engine.final_state import FinalState  # noqa: E402
from runs.engine.finish import snapshot_of  # noqa: E402
from runs.engine.sqlite_saver import PRAGMAS, open_sqlite_saver  # noqa: E402

BUSY_TIMEOUT = 20.0
#: Hops to a saver's thread so far, counted by wrapping each saver's way there.
hops = [0]


def counting(method: Any) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        hops[0] += 1
        return method(*args, **kwargs)

    return counted


aiosqlite.Connection._execute = counting(aiosqlite.Connection._execute)
SerialThread.call = counting(SerialThread.call)


async def langgraph_saver(path: str) -> tuple[Any, list[str]]:
    conn = aiosqlite.connect(path, timeout=BUSY_TIMEOUT)
    conn._thread.daemon = True
    await conn
    await conn.executescript(PRAGMAS.format(ms=int(BUSY_TIMEOUT * 1000)))
    statements: list[str] = []
    await conn.set_trace_callback(statements.append)
    saver = AsyncSqliteSaver(conn)
    await saver.setup()
    return saver, statements


async def our_saver(path: str) -> tuple[Any, list[str]]:
    saver = await open_sqlite_saver(path, busy_timeout=BUSY_TIMEOUT)
    statements: list[str] = []
    await saver.thread.call(saver.conn.set_trace_callback, statements.append)
    return saver, statements


async def run_echo(graph: Any, i: int) -> None:
    """One run as the worker makes it: `astream` (values, subgraphs), then the thread's state."""
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    async for _ in graph.astream({"text": f"x{i}"}, config, stream_mode=["values"], subgraphs=True):
        pass
    state = await graph.aget_state(config)
    assert state.values["reply"] == f"echo: x{i}", state.values


async def run_echo_to_its_end(graph: Any, i: int, *, read: bool) -> None:
    """One run as the worker makes it now: `astream`, then the thread's snapshot, read back
    (`read`) or from the root's last `values` chunk."""
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    final = FinalState(graph, modes=["values"], config=config)
    async for namespace, _, chunk in graph.astream(
        {"text": f"x{i}"}, config, stream_mode=["values"], subgraphs=True
    ):
        if not namespace:
            final.see(chunk)
    snapshot = None if read else final.snapshot(paused=False)
    if snapshot is None:
        snapshot = await snapshot_of(graph, config["configurable"]["thread_id"])
    assert snapshot.values["reply"] == f"echo: x{i}", snapshot.values


async def measure(name: str, open_saver: Any, runs: int, end: str = "") -> tuple[float, float]:
    path = str(Path(tempfile.mkdtemp(prefix="deerflow-ckpt-")) / "checkpoints.sqlite3")
    saver, statements = await open_saver(path)
    graph = echo_graph.copy(update={"checkpointer": saver})

    def one(i: int) -> Any:
        if end:
            return run_echo_to_its_end(graph, i, read=end == "read")
        return run_echo(graph, i)

    for i in range(50):  # warm-up
        await one(i)
    statements.clear()
    hops[0] = 0
    cpu = time.process_time()
    for i in range(runs):
        await one(i)
    cpu = time.process_time() - cpu
    count, hop_count = len(statements) / runs, hops[0] / runs
    if hasattr(saver, "aclose"):
        await saver.aclose()
    else:
        await saver.conn.close()
    print(
        f"{name:>24}: {1000 * cpu / runs:.3f} ms CPU per run, {count:.1f} statements "
        f"and {hop_count:.1f} hops per run"
    )
    return cpu / runs, count


async def main(runs: int, rounds: int, ends: bool) -> None:
    ratios = []
    for _ in range(rounds):
        if ends:
            read, _ = await measure("end: state read back", our_saver, runs, end="read")
            streamed, _ = await measure("end: from the stream", our_saver, runs, end="stream")
            ratios.append(streamed / read)
            continue
        theirs, _ = await measure("AsyncSqliteSaver", langgraph_saver, runs)
        ours, _ = await measure("ours (one hop per call)", our_saver, runs)
        ratios.append(ours / theirs)
    label = "from the stream / read back" if ends else "ours / AsyncSqliteSaver"
    print(f"{label}, CPU per run:", ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ends", action="store_true", help="compare the run's two ends")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.rounds, args.ends))
