"""The run journal's benchmarks: the chat history page on a big journal, and the journal's CPU.

    .venv/bin/python bench/journal.py                       # both, SQLite and PostgreSQL
    .venv/bin/python bench/journal.py --part pages --databases sqlite --events 1000000
    .venv/bin/python bench/journal.py --part cpu --runs 150

- pages: `GET /threads/{t}/messages` on a journal of `--events` rows (spread over 10 threads,
  each with a real agent run) through a live daphne server: p50/p95 over `--requests` sequential
  requests of each window (the last page, limit=200, before_seq and after_seq in the middle).
- cpu: two daphne servers side by side, one as it is and one with the journal switched off
  (bench/daphne_no_journal.py), each on its own SQLite database; `agent` create+wait runs at
  concurrency 4 in alternating rounds; server CPU (psutil, user+system) per run of each.

Results go to bench/journal_results.json and are reported in bench/README.md.
"""

import argparse
import asyncio
import contextlib
import json
import platform
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from load import client, summary_ms
from servers import (
    HOST,
    OUR_PYTHON,
    REPO_DIR,
    Server,
    _describe,
    _migrate,
    _our_env,
    _spawn,
    _stop,
    _wait_ready,
    free_port,
    log,
    our_server,
    postgres_and_redis,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "journal_results.json"
THREADS = 10
QUESTION = {"messages": [{"role": "user", "content": "What is 6 * 7?"}]}

SQLITE_SEED = """
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    INSERT INTO runs_runevent
        (thread_id, run_id, seq, event_type, category, content, metadata, created_at)
    SELECT ?, ?, ? + i,
        CASE i % 4 WHEN 0 THEN 'llm.call' WHEN 1 THEN 'llm.human.input' ELSE 'llm.ai.response' END,
        CASE i % 4 WHEN 0 THEN 'trace' ELSE 'message' END,
        json_object('type', 'ai', 'content', 'message number ' || i), '{}', ?
    FROM n
"""
POSTGRES_SEED = """
    INSERT INTO runs_runevent
        (thread_id, run_id, seq, event_type, category, content, metadata, created_at)
    SELECT %s, %s, %s + i,
        CASE i %% 4 WHEN 0 THEN 'llm.call' WHEN 1 THEN 'llm.human.input' ELSE 'llm.ai.response' END,
        CASE i %% 4 WHEN 0 THEN 'trace' ELSE 'message' END,
        jsonb_build_object('type', 'ai', 'content', 'message number ' || i), '{}', %s
    FROM generate_series(1, %s) AS i
"""
BASELINE = "baseline: GET /threads/{t}"
COUNTER = "UPDATE runs_threadeventcounter SET last_seq = {p} WHERE thread_id = {p}"


# --- pages ------------------------------------------------------------------------------------


async def agent_threads(base_url: str) -> list[tuple[str, str, int]]:
    """THREADS threads with one finished agent run each: (thread_id, run_id, last seq)."""
    made = []
    async with client(base_url, connections=4) as http:
        for _ in range(THREADS):
            thread_id = (await http.post("/threads", json={})).json()["thread_id"]
            await http.post(
                f"/threads/{thread_id}/runs/wait", json={"assistant_id": "agent", "input": QUESTION}
            )
            run_id = (await http.get(f"/threads/{thread_id}/runs")).json()[0]["run_id"]
            events = (await http.get(f"/threads/{thread_id}/runs/{run_id}/events")).json()
            made.append((thread_id, run_id, events[-1]["seq"]))
    return made


def seed(database: str, threads: list[tuple[str, str, int]], events: int) -> None:
    """Add `events` journal rows, spread evenly over the threads, after their real events."""
    each = events // len(threads)
    now = datetime.now(UTC)
    if database.startswith("sqlite:///"):
        with sqlite3.connect(database.removeprefix("sqlite:///")) as db:
            for thread_id, run_id, last in threads:
                stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
                db.execute(SQLITE_SEED, (each, thread_id, run_id.replace("-", ""), last, stamp))
                db.execute(COUNTER.format(p="?"), (last + each, thread_id))
            db.execute("ANALYZE")
        return
    import psycopg

    with psycopg.connect(database.replace("postgres://", "postgresql://", 1)) as db:
        for thread_id, run_id, last in threads:
            db.execute(POSTGRES_SEED, (thread_id, run_id, last, now, each))
            db.execute(COUNTER.format(p="%s"), (last + each, thread_id))
        db.execute("ANALYZE runs_runevent")


async def time_pages(server: Server, thread_id: str, last_seq: int, requests: int) -> dict:
    """p50/p95 of each window over `requests` sequential requests, and the server's CPU time
    per request (what the server itself spends, whatever else keeps the machine busy)."""
    middle = last_seq // 2
    windows = {
        BASELINE: {},
        "last page (limit 50)": {},
        "limit 200": {"limit": 200},
        "before_seq (middle)": {"before_seq": middle},
        "after_seq (middle)": {"after_seq": middle},
    }
    results = {}
    async with client(server.base_url, connections=1) as http:
        for name, params in windows.items():
            # The baseline: the thread itself (the same permission check, one small row).
            path = f"/threads/{thread_id}" if name == BASELINE else f"/threads/{thread_id}/messages"
            for _ in range(20):  # warm-up
                (await http.get(path, params=params)).raise_for_status()
            seconds = []
            cpu = server.cpu_seconds()
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get(path, params=params)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200 and response.json(), response.text
            cpu_ms = 1000 * (server.cpu_seconds() - cpu) / requests
            results[name] = {**summary_ms(seconds), "server_cpu_ms_per_request": cpu_ms}
            log(f"  {name}: p95 {results[name]['p95_ms']:.1f} ms, server CPU {cpu_ms:.1f} ms")
    return results


def pages(workdir: Path, database: str, events: int, requests: int) -> dict:
    with contextlib.ExitStack() as stack:
        extra: dict[str, str] = {}
        if database == "postgres":
            extra = stack.enter_context(postgres_and_redis(workdir, name="pages-postgres"))
        name = f"journal-pages-{database}"
        server = stack.enter_context(our_server(workdir, name=name, extra_env=extra))
        url = extra.get("DATABASE_URL") or f"sqlite:///{workdir / name / 'deerflow.sqlite3'}"
        threads = asyncio.run(agent_threads(server.base_url))
        log(f"{database}: seeding {events:,} journal events")
        started = time.monotonic()
        seed(url, threads, events)
        log(f"{database}: seeded in {time.monotonic() - started:.0f}s; timing the pages")
        thread_id, _, last = threads[0]
        return {
            "events": events,
            "threads": THREADS,
            "requests": requests,
            "windows": asyncio.run(
                time_pages(server, thread_id, last + events // THREADS, requests)
            ),
        }


# --- cpu --------------------------------------------------------------------------------------


@contextlib.contextmanager
def server_without_journal(workdir: Path) -> Iterator[Server]:
    name = "journal-off"
    var_dir = workdir / name
    var_dir.mkdir()
    logfile = workdir / f"{name}.log"
    env = {**_our_env(var_dir, {}), "DEERFLOW_EMBEDDED_WORKER": "true"}
    _migrate(env, logfile)
    port = free_port()
    command = [
        str(OUR_PYTHON), str(BENCH_DIR / "daphne_no_journal.py"), "-b", HOST, "-p", str(port),
        "deerflow_site.asgi:application",
    ]  # fmt: skip
    process = _spawn(command, cwd=REPO_DIR, env=env, logfile=logfile)
    try:
        base_url = f"http://{HOST}:{port}/api"
        _wait_ready(f"{base_url}/ok", [process], logfile)
        yield Server(name, _describe("ours-sqlite", False), base_url, process, logs=[logfile])
    finally:
        _stop(process)


async def agent_round(server: Server, threads: list[str], runs_each: int) -> tuple[int, float]:
    """`runs_each` agent create+wait runs on each thread, concurrently; (runs, CPU seconds)."""
    async with client(server.base_url, connections=len(threads)) as http:

        async def loop(thread_id: str) -> int:
            for _ in range(runs_each):
                response = await http.post(
                    f"/threads/{thread_id}/runs/wait",
                    json={"assistant_id": "agent", "input": QUESTION},
                )
                answer = response.json()["messages"][-1]["content"]
                assert answer == "The result is 42.", response.text
            return runs_each

        cpu = server.cpu_seconds()
        done = sum(await asyncio.gather(*(loop(t) for t in threads)))
        return done, server.cpu_seconds() - cpu


async def new_threads(server: Server, count: int) -> list[str]:
    async with client(server.base_url, connections=1) as http:
        return [(await http.post("/threads", json={})).json()["thread_id"] for _ in range(count)]


def cpu(workdir: Path, runs: int, rounds: int, concurrency: int) -> dict:
    with (
        our_server(workdir, name="journal-on", extra_env={}) as on,
        server_without_journal(workdir) as off,
    ):
        servers = {"with journal": on, "without journal": off}
        threads = {name: asyncio.run(new_threads(s, concurrency)) for name, s in servers.items()}
        for name, server in servers.items():  # warm-up: graphs compiled, caches full
            asyncio.run(agent_round(server, threads[name], 3))
        totals = {name: [0, 0.0] for name in servers}
        per_round = max(1, runs // rounds // concurrency)
        for round_number in range(rounds):
            order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
            for name in order:  # alternate who goes first: drift in the machine's load evens out
                done, seconds = asyncio.run(agent_round(servers[name], threads[name], per_round))
                totals[name][0] += done
                totals[name][1] += seconds
        result = {
            name: {"runs": done, "cpu_ms_per_run": 1000 * seconds / done}
            for name, (done, seconds) in totals.items()
        }
        on_ms = result["with journal"]["cpu_ms_per_run"]
        off_ms = result["without journal"]["cpu_ms_per_run"]
        result["journal_cost_percent"] = 100 * (on_ms - off_ms) / off_ms
        log(f"cpu: {json.dumps(result)}")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("pages", "cpu", "both"), default="both")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=400, help="agent runs per server (cpu)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = {
        "cpus": psutil.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": list(psutil.getloadavg()),
    }
    with tempfile.TemporaryDirectory(prefix="deerflow-journal-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o711)  # PostgreSQL runs as its own user and must reach its data dir below
        if args.part in ("pages", "both"):
            for database in args.databases.split(","):
                results.setdefault("pages", {})[database] = pages(
                    workdir, database, args.events, args.requests
                )
                save(results)
        if args.part in ("cpu", "both"):
            results["cpu"] = cpu(workdir, args.runs, args.rounds, args.concurrency)
            save(results)


def save(results: dict[str, Any]) -> None:
    """Write what is measured so far (a later part that fails loses only itself)."""
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    log(f"results in {RESULTS}")


if __name__ == "__main__":
    main()
