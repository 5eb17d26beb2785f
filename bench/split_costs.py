"""What a create+wait run costs on the split layout, process by process, counted not timed.

    .venv/bin/python bench/split_costs.py [--runs 400] [--concurrency 8] [--rounds 3]
        [--server floor-split]

Starts a throwaway PostgreSQL + Redis and `ours-postgres-split` (one daphne web process, one
`manage.py runs_worker`) from this checkout, as `bench/run` does, then sends `--runs` create+wait
runs at `--concurrency` per round. For each round it prints, per run: the CPU milliseconds of
the web process and of the worker, the Redis commands by name (`INFO commandstats`), and the
PostgreSQL transactions and rows written (`pg_stat_database`). The counts do not depend on how
busy the machine is; the CPU does, so compare it between checkouts run back to back (a
worktree of the old commit with the venv symlinked runs this same file), as ratios.
`--server floor-split` counts the split layout's floor (bench/floor_split.py) the same way.
"""

import argparse
import asyncio
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import floor_servers
import httpx
import load
import psycopg
import redis
import servers

PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


def redis_calls(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        connections = client.info("stats")["total_connections_received"]
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {**calls, "(connections)": connections - 1}


def pg_counters(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return dict(zip(PG_COUNTERS, (int(v) for v in row), strict=True))


async def send_runs(base_url: str, *, runs: int, concurrency: int) -> int:
    """`runs` create+wait runs, `concurrency` at a time, each client on its own thread;
    returns how many answered with the echo."""
    ok = 0
    async with load.client(base_url, connections=concurrency + 4) as http:
        threads = await asyncio.gather(*(load.create_thread(http) for _ in range(concurrency)))
        todo = iter(range(runs))

        async def one_client(thread_id: str) -> None:
            nonlocal ok
            for n in todo:
                body = {"assistant_id": load.GRAPH_ID, "input": {"text": f"r{n}"}}
                response = await http.post(f"/threads/{thread_id}/runs/wait", json=body)
                ok += response.status_code == 200 and response.json().get("reply") == f"echo: r{n}"

        await asyncio.gather(*(one_client(t) for t in threads))
    return ok


def per_run(before: dict[str, Any], after: dict[str, Any], runs: int) -> dict[str, float]:
    return {
        k: (after.get(k, 0) - before.get(k, 0)) / runs
        for k in after
        if after.get(k, 0) != before.get(k, 0)
    }


def set_statement_logging(url: str, on: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET log_statement = '{'all' if on else 'none'}'")
        conn.execute("ALTER SYSTEM SET log_line_prefix = '%p '")
        conn.execute("SELECT pg_reload_conf()")


def print_statements(
    workdir: Path, server: servers.Server, url: str, runs: int, concurrency: int
) -> None:
    """`runs` create+wait runs, `concurrency` at a time, every statement logged: the statements
    per run, by their first words (BEGIN, COMMIT and the statement's kind and table)."""
    logs = list(workdir.glob("services-*/pg/postgresql.log"))
    assert logs, "no PostgreSQL log"
    start = logs[0].stat().st_size
    set_statement_logging(url, True)
    try:
        asyncio.run(send_runs(server.base_url, runs=runs, concurrency=concurrency))
    finally:
        set_statement_logging(url, False)
    text = logs[0].read_bytes()[start:].decode(errors="replace")
    kinds: Counter[str] = Counter()
    # One entry per line with the `%p ` prefix; a statement's further lines follow it.
    for entry in re.split(r"\n(?=\d+ )", text):
        found = re.match(r"\d+ LOG:  (?:statement|execute [^:]*): (.*)", entry, re.S)
        if found is None:
            continue
        statement = re.sub(r"\s+", " ", found.group(1)).strip()
        words = statement.split(" ")
        kind = " ".join(words[:2])
        table = re.search(r"(?:FROM|INTO|UPDATE) \"?([a-z_]+)", statement)
        kinds[kind + (f" .. {table.group(1)}" if table else "")] += 1
    for kind, count in kinds.most_common():
        print(f"  {count / runs:6.2f}  {kind}")
    print(f"  {sum(kinds.values()) / runs:6.2f}  statements per run")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs-per-worker", type=int, default=10)
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        help="then this many runs (--concurrency at a time) with PostgreSQL logging every "
        "statement: the statements per run, by kind",
    )
    parser.add_argument(
        "--server", choices=("ours-postgres-split", "floor-split"), default="ours-postgres-split"
    )
    args = parser.parse_args()
    name = args.server
    with tempfile.TemporaryDirectory(prefix="split-costs-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o711)  # PostgreSQL runs as its own user and must reach its data dir
        with servers.postgres_and_redis(workdir, name=name) as urls:
            env = {**urls, "DEERFLOW_WORKER_CONCURRENCY": str(args.jobs_per_worker)}
            if name == "floor-split":
                started = floor_servers.floor_split_server(workdir, env)
            else:
                started = servers.our_server(workdir, name=name, extra_env=env, split_worker=True)
            with started as server:
                asyncio.run(send_runs(server.base_url, runs=40, concurrency=4))  # warm-up
                for round_ in range(1, args.rounds + 1):
                    cpu = server.cpu_seconds_by_role()
                    calls = redis_calls(urls["REDIS_URL"])
                    pg = pg_counters(urls["DATABASE_URL"])
                    ok = asyncio.run(
                        send_runs(server.base_url, runs=args.runs, concurrency=args.concurrency)
                    )
                    cpu_after = server.cpu_seconds_by_role()
                    redis_per_run = per_run(calls, redis_calls(urls["REDIS_URL"]), args.runs)
                    redis_per_run.pop("info", None)
                    pg_per_run = per_run(pg, pg_counters(urls["DATABASE_URL"]), args.runs)
                    ms = {r: 1000 * (cpu_after[r] - cpu[r]) / args.runs for r in cpu_after}
                    print(
                        f"round {round_}: {ok}/{args.runs} answered, c={args.concurrency};"
                        f" CPU ms/run web {ms['web']:.2f} worker {ms['worker']:.2f}"
                        f" total {sum(ms.values()):.2f}"
                    )
                    print(
                        f"  redis commands/run {sum(redis_per_run.values()):.2f}: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(redis_per_run.items()))
                    )
                    counts = ", ".join(f"{k} {v:.2f}" for k, v in pg_per_run.items())
                    print(f"  postgres/run: {counts}")
                if args.statements:
                    print_statements(
                        workdir, server, urls["DATABASE_URL"], args.statements, args.concurrency
                    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except httpx.HTTPError as exc:
        print(f"split_costs: {exc!r}", file=sys.stderr)
        sys.exit(1)
