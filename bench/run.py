"""The benchmark: our server against the reference LangGraph server, side by side in one run.

    .venv/bin/python bench/run.py [--servers reference,ours-sqlite,...] [--quick] [--profile]

(bench/run does the setup first.) Each server is started as a subprocess on 127.0.0.1, measured,
and stopped before the next starts, so that they never compete for the 2 cores. Results are
printed as a table and written to bench/results.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import aegra
import floor_servers
import load
import reference
import report
import servers
import workloads
from servers import Server, log

PHASES = ("create_wait", "threads", "first_event", "chat", "streams")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(servers.DEFAULT_SERVER_NAMES))
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"which measurements, in this order: {','.join(PHASES)}",
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted per level")
    parser.add_argument("--sse-samples", type=int, default=100)
    parser.add_argument("--sse-seconds", type=float, default=40.0, help="cap on the SSE phase")
    parser.add_argument("--thread-samples", type=int, default=200, help="POST /threads samples")
    parser.add_argument("--chat-conversations", type=int, default=16)
    parser.add_argument("--chat-turns", type=int, default=5, help="streamed runs per conversation")
    parser.add_argument("--chat-concurrency", type=int, default=8)
    parser.add_argument("--chat-seconds", type=float, default=120.0, help="cap on the chat phase")
    parser.add_argument("--streams", default="500,2000,10000", help="open-stream levels")
    parser.add_argument("--heartbeat-window", type=float, default=7.0)
    parser.add_argument(
        "--open-seconds", type=float, default=240.0, help="cap on opening each stream level"
    )
    parser.add_argument("--jobs-per-worker", type=int, default=10)
    parser.add_argument("--output", type=Path, default=servers.BENCH_DIR / "results.json")
    parser.add_argument(
        "--workdir", type=Path, help="keep logs and data here (default: a temp dir)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record our servers during the highest concurrency level (flamegraph + raw)",
    )
    parser.add_argument(
        "--aegra-python", help="a Python >= 3.12 for Aegra's venv (default: looked for)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: short levels, few samples, 50 streams"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.sse_samples = 2.0, 0.5, 10
        args.thread_samples, args.chat_conversations, args.chat_turns = 20, 4, 2
        args.chat_concurrency = 2
        if args.streams == parser.get_default("streams"):
            args.streams = "50"
        args.heartbeat_window, args.open_seconds = 6.0, 60.0
    args.phase_names = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    if unknown_phases := sorted(set(args.phase_names) - set(PHASES)):
        parser.error(f"unknown phases {unknown_phases}; choose from {list(PHASES)}")
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = sorted(set(names) - set(servers.SERVER_NAMES))
    if unknown:
        parser.error(f"unknown servers {unknown}; choose from {list(servers.SERVER_NAMES)}")
    args.server_names = names
    args.levels = [int(c) for c in args.concurrency.split(",")]
    args.stream_levels = sorted(int(n) for n in args.streams.split(",") if n.strip())
    return args


def raise_file_limit(wanted: int) -> int:
    """Thousands of open streams need as many sockets, in the servers (who inherit it) and here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def start(name: str, workdir: Path, args: argparse.Namespace) -> Iterator[Server]:
    if name == "reference":
        with reference.reference_server(workdir, jobs_per_worker=args.jobs_per_worker) as server:
            yield server
        return
    if name == "aegra":
        python = aegra.prepare(args.aegra_python)  # raises ServerSkipped without Python 3.12
        with servers.postgres_and_redis(workdir, name=name) as urls:
            with aegra.aegra_server(
                workdir, python=python, database_url=urls["DATABASE_URL"]
            ) as server:
                yield server
        return
    if name == "floor-split":
        with servers.postgres_and_redis(workdir, name=name) as urls:
            env = {"DEERFLOW_WORKER_CONCURRENCY": str(args.jobs_per_worker), **urls}
            with floor_servers.floor_split_server(workdir, env) as server:
                yield server
        return
    if name in ("floor", "floor-durable"):
        with floor_servers.floor_server(workdir, durable=name == "floor-durable") as server:
            yield server
        return
    concurrency = {"DEERFLOW_WORKER_CONCURRENCY": str(args.jobs_per_worker)}
    if name == "ours-sqlite":
        with servers.our_server(workdir, name=name, extra_env=concurrency) as server:
            yield server
        return
    with servers.postgres_and_redis(workdir, name=name) as urls:
        with servers.our_server(
            workdir,
            name=name,
            extra_env={**concurrency, **urls},
            split_worker=name.startswith("ours-postgres-split"),
            webs=2 if name == "ours-postgres-split-2x2" else 1,
            workers=2 if name == "ours-postgres-split-2x2" else 1,
        ) as server:
            yield server


@contextlib.contextmanager
def profiling(server: Server, workdir: Path, seconds: float, enabled: bool) -> Iterator[list[str]]:
    """py-spy record of every process of our server while the block runs; yields the files."""
    files: list[str] = []
    spy = servers.py_spy()
    if not enabled or server.name == "reference" or spy is None:
        yield files
        return
    recorders = []
    for pid in server.pids():
        # A flamegraph of where threads are (waits included) and the GIL holders' raw stacks
        # (where the CPU goes), for bench/profile_summary.py.
        for fmt, extra, suffix in (("flamegraph", [], "svg"), ("raw", ["--gil"], "gil.txt")):
            out = workdir / f"profile-{server.name}-{pid}.{suffix}"
            command = [
                spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                "--rate", "200", "--format", fmt, "--output", str(out), "--nonblocking", *extra,
            ]  # fmt: skip
            recorders.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            files.append(str(out))
    try:
        yield files
    finally:
        for recorder in recorders:
            try:
                recorder.wait(seconds + 20)
            except subprocess.TimeoutExpired:
                recorder.kill()


async def measure(server: Server, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"description": server.description}
    log(f"{server.name}: warm-up")
    await load.create_wait(server.base_url, concurrency=4, duration=1.0, warmup=0.5)
    for phase in args.phase_names:
        if server.phases is not None and phase not in server.phases:
            log(f"{server.name}: no {phase} phase (it serves {', '.join(server.phases)})")
            continue
        result.update(await PHASE_FUNCTIONS[phase](server, workdir, args))
    return result


async def measure_create_wait(server: Server, workdir: Path, args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {}
    for level in args.levels:
        log(f"{server.name}: create+wait at concurrency {level}")
        is_top = level == max(args.levels)
        with profiling(server, workdir, args.duration + args.warmup, args.profile and is_top) as f:
            roles_before = server.cpu_seconds_by_role()
            measured = await load.create_wait(
                server.base_url, concurrency=level, duration=args.duration, warmup=args.warmup
            )
            roles = server.cpu_seconds_by_role()
        if runs := measured.get("answered_in_all"):
            # Every process of the server (web, worker), over the whole level: CPU cost of a run.
            used = {role: roles[role] - roles_before.get(role, 0.0) for role in roles}
            measured["server_cpu_ms_per_run"] = 1000 * sum(used.values()) / runs
            if "worker" in used:  # the split layouts: where a run's CPU goes
                for role, seconds in used.items():
                    measured[f"server_cpu_ms_per_run_{role}"] = 1000 * seconds / runs
        if f:
            measured["profiles"] = f
        out[str(level)] = measured
    return {"create_wait": out}


async def measure_threads(server: Server, workdir: Path, args: argparse.Namespace) -> dict:
    log(f"{server.name}: POST /threads ({args.thread_samples} sequential)")
    measured = await workloads.thread_create(
        server.base_url, samples=args.thread_samples, max_seconds=30.0,
        cpu_seconds=server.cpu_seconds,
    )  # fmt: skip
    return {"threads": measured}


async def measure_first_event(server: Server, workdir: Path, args: argparse.Namespace) -> dict:
    log(f"{server.name}: time to the first SSE event ({args.sse_samples} streams)")
    measured = await load.first_event(
        server.base_url, samples=args.sse_samples, max_seconds=args.sse_seconds
    )
    return {"sse": measured}


async def measure_chat(server: Server, workdir: Path, args: argparse.Namespace) -> dict:
    log(
        f"{server.name}: chat, {args.chat_conversations} conversations x {args.chat_turns} "
        f"turns, {args.chat_concurrency} at a time"
    )
    measured = await workloads.chat(
        server.base_url,
        conversations=args.chat_conversations,
        turns=args.chat_turns,
        concurrency=args.chat_concurrency,
        max_seconds=args.chat_seconds,
        cpu_seconds=server.cpu_seconds,
    )
    return {"chat": measured}


async def measure_streams(server: Server, workdir: Path, args: argparse.Namespace) -> dict:
    if not args.stream_levels:
        return {}
    log(f"{server.name}: open streams {args.stream_levels}")
    measured = await load.open_streams(
        server.base_url,
        levels=args.stream_levels,
        server=load.ProcessProbe(
            rss=server.rss_bytes, threads=server.os_threads, cpu_seconds=server.cpu_seconds
        ),
        heartbeat_window=args.heartbeat_window,
        open_concurrency=64,
        runs=args.jobs_per_worker,
        open_timeout=60.0,
        level_open_seconds=args.open_seconds,
    )
    return {"streams": measured}


PHASE_FUNCTIONS = {
    "create_wait": measure_create_wait,
    "threads": measure_threads,
    "first_event": measure_first_event,
    "chat": measure_chat,
    "streams": measure_streams,
}


def versions() -> dict[str, Any]:
    ours = {name: metadata.version(name) for name in ("langgraph", "django", "daphne", "channels")}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        ours["git"] = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=servers.REPO_DIR, capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
    reference: dict[str, str] = {}
    python = servers.REFERENCE_VENV / "bin" / "python"
    if python.exists():
        names = ["langgraph-cli", "langgraph-api", "langgraph-runtime-inmem", "langgraph"]
        script = (
            "import json, sys; from importlib.metadata import version; "
            "print(json.dumps({n: version(n) for n in sys.argv[1:]}))"
        )
        out = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True)
        with contextlib.suppress(ValueError):
            reference = json.loads(out.stdout)
    return {"ours": ours, "reference": reference, "aegra": aegra.versions()}


def main() -> int:
    args = parse_args()
    # A SIGTERM (a timeout, a CI stop) unwinds like Ctrl-C, so every server started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    files = raise_file_limit(max(args.stream_levels or [0]) * 3 + 1024)
    log(f"file descriptor limit {files}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deerflow-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o711)  # PostgreSQL runs as its own user and must reach its data dir below
    log(f"logs and data in {workdir}")
    results: dict[str, Any] = {}
    began = time.monotonic()
    for name in args.server_names:
        # The load generator's own collector: each server is measured by a generator whose
        # heap holds only what it loaded and kept, not what the servers before it left behind.
        gc.collect()
        gc.freeze()
        log(f"{name}: starting")
        server_began = time.monotonic()
        try:
            with start(name, workdir, args) as server:
                log(f"{name}: {server.base_url} (pid {server.web.pid})")
                results[name] = asyncio.run(measure(server, workdir, args))
        except aegra.ServerSkipped as exc:  # loudly: in the log, the table and results.json
            log(f"{name}: SKIPPED: {exc}")
            results[name] = {"skipped": str(exc)}
        except Exception as exc:  # one server failing must not lose the others' results
            log(f"{name}: failed: {exc!r}")
            results[name] = {"error": f"{exc!r}"[-2000:]}
        results[name]["elapsed_seconds"] = round(time.monotonic() - server_began, 1)
        write_report(args, results, began)  # after each server: a later crash keeps this one
    written = write_report(args, results, began)
    levels = [str(level) for level in args.levels]
    streams = [str(level) for level in args.stream_levels]
    print(report.table(results, written["comparison"], args.server_names, levels, streams))
    log(f"wrote {args.output} in {written['elapsed_seconds']}s; logs in {workdir}")
    return 1 if any("error" in r for r in results.values()) else 0


def write_report(args: argparse.Namespace, results: dict[str, Any], began: float) -> dict:
    written = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_seconds": round(time.monotonic() - began, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            key: value
            for key, value in vars(args).items()
            if key not in {"output", "workdir", "server_names", "phase_names"}
        },
        "versions": versions(),
        "servers": results,
        "comparison": report.comparison(results),
    }
    args.output.write_text(json.dumps(written, indent=2, default=str) + "\n")
    return written


if __name__ == "__main__":
    sys.exit(main())
