"""CPU per run without daphne: the ASGI application and its embedded worker driven in-process.

    .venv/bin/python bench/inprocess.py [--concurrency 32] [--runs 576]

A quick loop for working on the per-run cost: the same create+wait as bench/run (`bench` graph,
one thread per client), through httpx's ASGI transport, on a fresh SQLite database in a
temporary directory. The CPU time includes the load generator's (httpx), so compare it only
with itself; bench/run gives the numbers that count. Wrap it in `py-spy record --gil` to see
where the time goes.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def configure() -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="deerflow_site.settings",
        DEBUG="false",
        SECRET_KEY="bench-in-process-secret-key",
        ALLOWED_HOSTS="*",
        DEERFLOW_AUTH_MODE="local",
        DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION="true",
        DEERFLOW_VAR_DIR=tempfile.mkdtemp(prefix="deerflow-inprocess-"),
        DEERFLOW_LANGGRAPH_CONFIG=str(REPO / "bench" / "langgraph.json"),
        # One user with up to --concurrency clients: no per-user cap (as in bench/servers.py).
        DEERFLOW_MAX_ACTIVE_RUNS_PER_USER="0",
    )
    sys.path.insert(0, str(REPO))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


async def measure(concurrency: int, runs: int) -> None:
    import httpx

    from deerflow_site.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        threads = []
        for _ in range(concurrency):
            created = await client.post("/api/threads", json={})
            threads.append(created.json()["thread_id"])
        done = 0

        async def loop(thread_id: str, count: int) -> None:
            nonlocal done
            for i in range(count):
                response = await client.post(
                    f"/api/threads/{thread_id}/runs/wait",
                    json={"assistant_id": "bench", "input": {"text": f"x{i}"}},
                )
                if response.status_code != 200 or response.json().get("reply") != f"echo: x{i}":
                    raise RuntimeError(f"unexpected answer: {response.status_code} {response.text}")
                done += 1

        await asyncio.gather(*(loop(t, 5) for t in threads))  # warm-up
        done = 0
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop(t, runs // concurrency) for t in threads))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"concurrency {concurrency}: {done} runs, {done / wall:.1f} runs/s, "
            f"{1000 * cpu / done:.2f} ms CPU per run (server and load generator)"
        )


def measure_counting(concurrency: int, runs: int, counting: list[bool]) -> None:
    """Run `measure` with `counting[0]` True while the measured runs go (not during the set-up
    and the warm-up), for counters to count only those: `measure` reads the process time at
    their start and at their end, which switches the flag."""
    process_time = time.process_time

    def switch() -> float:
        counting[0] = not counting[0]
        return process_time()

    time.process_time = switch
    try:
        asyncio.run(measure(concurrency, runs))
    finally:
        time.process_time = process_time


def command_line(doc: str | None, *, runs: int) -> argparse.Namespace:
    """The in-process tools' options (`--concurrency` clients, `--runs` create+wait runs),
    described by the first paragraph of `doc`; then Django configured (`configure`)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=runs)
    args = parser.parse_args()
    configure()
    return args


def main() -> None:
    args = command_line(__doc__, runs=576)
    asyncio.run(measure(args.concurrency, args.runs))


if __name__ == "__main__":
    main()
