"""CPU per run of the echo graph alone, with the floor's config against the worker's and each
difference between them alone.

    .venv/bin/python bench/graph_config.py [--concurrency 32] [--runs 640] [--rounds 5]

The `bench` echo graph bound to our SQLite saver (a fresh file), `astream` on its own thread per
client, `--concurrency` clients at once; no HTTP, no database of Django's. The ways are
alternated round by round in one process, and the CPU per run (the saver's thread included) is
printed per round and as the median per way. Ways:
- floor: `{"configurable": {"thread_id"}}`, `stream_mode="values"` (bench/floor_app.py);
- ours: the worker's `plan_run` config (the server's configurable keys and metadata, the run's
  id, the run journal as callback), stream modes as a list, each part through
  `executor.stream_graph` (its translator and a publisher that drops the events);
- the floor plus one of ours: `+modes` (a list of modes), `+keys` (configurable keys and
  metadata), `+run_id`, `+journal` (the run journal as callback).
"""

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inprocess import configure

#: "echo" (bench/graph.py) or "chat" (bench/chat_graph.py, a model, a tool and 200 tokens).
GRAPH = ["echo"]


def graph_input(text: str) -> dict[str, Any]:
    if GRAPH[0] == "chat":
        return {"messages": [{"role": "human", "content": text}]}
    return {"text": text}


class DroppingPublisher:
    """What stream_graph needs of an EventPublisher: events counted, not sent."""

    def __init__(self, run: Any) -> None:
        self.events = 0

    def start(self) -> None:
        pass

    def emit(self, name: str, payload: Any) -> None:
        self.events += 1

    async def close(self) -> None:
        pass


def server_keys(thread_id: str) -> dict[str, Any]:
    return {
        "thread_id": thread_id,
        "run_id": str(uuid.uuid4()),
        "graph_id": "bench",
        "assistant_id": str(uuid.uuid4()),
        "user_id": "1",
    }


def ways() -> dict[str, Any]:
    from runs.engine.executor import RunPlan, stream_graph
    from runs.engine.journal import JournalWriter, RunJournal
    from runs.engine.streaming import EventPublisher

    class FakeRun:
        pk = uuid.uuid4()
        thread_id = ""
        resumable = False
        kwargs: dict[str, Any] = {}

    def journal() -> RunJournal:
        writer = JournalWriter(FakeRun())  # type: ignore[arg-type]
        return RunJournal(writer)

    async def floor(graph: Any, thread_id: str, text: str) -> None:
        config = {"configurable": {"thread_id": thread_id}}
        async for _ in graph.astream(graph_input(text), config, stream_mode="values"):
            pass

    def plain(**extra: Any) -> Any:
        async def run(graph: Any, thread_id: str, text: str) -> None:
            keys = server_keys(thread_id) if extra.get("keys") else {"thread_id": thread_id}
            config: dict[str, Any] = {"configurable": keys}
            if extra.get("keys"):
                config["metadata"] = dict(keys)
            if extra.get("run_id"):
                config["run_id"] = uuid.uuid4()
            if extra.get("journal"):
                config["callbacks"] = [journal()]
            mode: Any = ["values"] if extra.get("modes") else "values"
            async for _ in graph.astream(graph_input(text), config, stream_mode=mode):
                pass

        return run

    def ours_with(publisher: Any) -> Any:
        async def run(graph: Any, thread_id: str, text: str) -> None:
            keys = server_keys(thread_id)
            config = {
                "metadata": dict(keys),
                "configurable": dict(keys),
                "callbacks": [journal()],
                "run_id": uuid.UUID(keys["run_id"]),
            }
            plan = RunPlan(input=graph_input(text), config=config, stream_modes=["values"])
            run = FakeRun()
            run.pk, run.thread_id = config["run_id"], thread_id
            events = publisher(run)
            events.start()
            await stream_graph(graph, plan, events)
            await events.close()

        return run

    return {
        "floor": floor,
        "+modes": plain(modes=True),
        "+keys": plain(keys=True),
        "+run_id": plain(run_id=True),
        "+journal": plain(journal=True),
        "ours": ours_with(DroppingPublisher),
        "ours+publisher": ours_with(EventPublisher),
    }


async def measure(concurrency: int, runs: int, rounds: int, only: list[str], calls: bool) -> None:
    import tempfile

    from runs.engine.sqlite_saver import open_sqlite_saver

    if GRAPH[0] == "chat":
        from bench.chat_graph import graph as echo_graph
    else:
        from bench.graph import graph as echo_graph

    path = Path(tempfile.mkdtemp(prefix="graph-config-")) / "checkpoints.sqlite3"
    saver = await open_sqlite_saver(str(path), busy_timeout=20.0)
    graph = echo_graph.copy(update={"checkpointer": saver})
    table = {name: way for name, way in ways().items() if not only or name in only}
    threads = [str(uuid.uuid4()) for _ in range(concurrency)]

    async def one_way(way: Any, count: int) -> float:
        async def client(thread_id: str) -> None:
            for i in range(count):
                await way(graph, thread_id, f"x{i}")

        cpu = time.process_time()
        await asyncio.gather(*(client(t) for t in threads))
        return (time.process_time() - cpu) / (count * concurrency)

    for way in table.values():  # warm-up
        await one_way(way, 2)
    if calls:
        for name, way in table.items():
            counted = [0]

            def count(frame: Any, event: str, arg: Any, counted: list[int] = counted) -> None:
                if event == "call":
                    counted[0] += 1

            threading.setprofile(count)
            sys.setprofile(count)
            await one_way(way, 2)
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
            print(f"{name:10s} {counted[0] / (2 * concurrency):.0f} Python calls per run")
    results: dict[str, list[float]] = {name: [] for name in table}
    for round_ in range(rounds):
        names = list(table) if round_ % 2 == 0 else list(reversed(table))
        for name in names:
            results[name].append(await one_way(table[name], max(1, runs // concurrency)))
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {1e6 * results[n][-1]:.0f}" for n in table))
    if not rounds:
        saver.thread.stop()
        return
    base = statistics.median(results["floor"]) if "floor" in results else None
    for name, values in results.items():
        median = statistics.median(values)
        ratio = f" ({median / base:.2f} of the floor)" if base else ""
        print(f"{name:10s} median {1e6 * median:.0f} us CPU per run{ratio}")
    saver.thread.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--calls", action="store_true", help="count Python calls per run first")
    parser.add_argument("--graph", choices=("echo", "chat"), default="echo")
    args = parser.parse_args()
    GRAPH[0] = args.graph
    configure()
    asyncio.run(measure(args.concurrency, args.runs, args.rounds, args.only, args.calls))


if __name__ == "__main__":
    main()
