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
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import load
import servers
from servers import Server, log

TARGETS = {
    "rps_c32_vs_reference": 1.5,  # ours / reference runs per second at concurrency 32, at least
    "create_wait_p50_ms_c1": 30.0,  # at most
    "first_event_p50_ms": 15.0,  # at most
    "kb_per_stream_2000": 50.0,  # at most, with 2,000 open streams in one process
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(servers.SERVER_NAMES))
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted per level")
    parser.add_argument("--sse-samples", type=int, default=100)
    parser.add_argument("--sse-seconds", type=float, default=40.0, help="cap on the SSE phase")
    parser.add_argument("--streams", default="500,2000", help="open-stream levels")
    parser.add_argument("--heartbeat-window", type=float, default=7.0)
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
        "--quick", action="store_true", help="a smoke run: short levels, few samples, 50 streams"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.sse_samples = 2.0, 0.5, 10
        args.streams, args.heartbeat_window = "50", 6.0
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
        with servers.reference_server(workdir, jobs_per_worker=args.jobs_per_worker) as server:
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
            split_worker=name == "ours-postgres-split",
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
    result: dict[str, Any] = {"description": server.description, "create_wait": {}}
    log(f"{server.name}: warm-up")
    await load.create_wait(server.base_url, concurrency=4, duration=1.0, warmup=0.5)
    for level in args.levels:
        log(f"{server.name}: create+wait at concurrency {level}")
        is_top = level == max(args.levels)
        with profiling(server, workdir, args.duration + args.warmup, args.profile and is_top) as f:
            cpu_before = server.cpu_seconds()
            measured = await load.create_wait(
                server.base_url, concurrency=level, duration=args.duration, warmup=args.warmup
            )
            cpu = server.cpu_seconds() - cpu_before
        if measured.get("answered_in_all"):
            # Every process of the server (web, worker), over the whole level: CPU cost of a run.
            measured["server_cpu_ms_per_run"] = 1000 * cpu / measured["answered_in_all"]
        if f:
            measured["profiles"] = f
        result["create_wait"][str(level)] = measured
    log(f"{server.name}: time to the first SSE event ({args.sse_samples} streams)")
    result["sse"] = await load.first_event(
        server.base_url, samples=args.sse_samples, max_seconds=args.sse_seconds
    )
    if args.stream_levels:
        log(f"{server.name}: open streams {args.stream_levels}")
        result["streams"] = await load.open_streams(
            server.base_url,
            levels=args.stream_levels,
            server=load.ProcessProbe(
                rss=server.rss_bytes, threads=server.os_threads, cpu_seconds=server.cpu_seconds
            ),
            heartbeat_window=args.heartbeat_window,
            open_concurrency=64,
            runs=args.jobs_per_worker,
            open_timeout=60.0,
        )
    return result


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
    return {"ours": ours, "reference": reference}


def ratios_and_targets(results: dict[str, Any]) -> dict[str, Any]:
    reference = results.get("reference")
    out: dict[str, Any] = {}
    for name, ours in results.items():
        if name == "reference" or "error" in ours:
            continue
        entry: dict[str, Any] = {"ratios_vs_reference": {}, "targets": {}}
        if reference and "error" not in reference:
            for level, measured in ours["create_wait"].items():
                theirs = reference["create_wait"].get(level, {}).get("runs_per_second")
                if theirs and measured.get("runs_per_second") is not None:
                    entry["ratios_vs_reference"][f"runs_per_second_c{level}"] = round(
                        measured["runs_per_second"] / theirs, 2
                    )
        c1 = ours["create_wait"].get("1", {})
        streams = ours.get("streams", {}).get("levels", {}).get("2000", {})
        checks = {
            "rps_c32_vs_reference": entry["ratios_vs_reference"].get("runs_per_second_c32"),
            "create_wait_p50_ms_c1": c1.get("p50_ms"),
            "first_event_p50_ms": ours.get("sse", {}).get("first_event", {}).get("p50_ms"),
            "kb_per_stream_2000": streams.get("kb_per_stream")
            if streams.get("heartbeat_in_window") == 2000
            else None,
        }
        for key, value in checks.items():
            target = TARGETS[key]
            met = (
                None
                if value is None
                else (value >= target if key.startswith("rps") else value <= target)
            )
            entry["targets"][key] = {"value": value, "target": target, "met": met}
        out[name] = entry
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: dict[str, Any], comparison: dict[str, Any], args: argparse.Namespace) -> str:
    names = [n for n in args.server_names if n in results]
    rows: list[list[str]] = [["metric", *names]]

    def row(label: str, getter: Any, digits: int = 1) -> None:
        cells = []
        for name in names:
            try:
                cells.append(fmt(getter(results[name]), digits))
            except (KeyError, TypeError):
                cells.append("-")
        rows.append([label, *cells])

    for level in map(str, args.levels):
        row(
            f"runs/s create+wait c={level}",
            lambda r, lv=level: r["create_wait"][lv]["runs_per_second"],
        )
        row(f"  p50 ms c={level}", lambda r, lv=level: r["create_wait"][lv]["p50_ms"])
        row(f"  p95 ms c={level}", lambda r, lv=level: r["create_wait"][lv]["p95_ms"])
        row(f"  errors c={level}", lambda r, lv=level: r["create_wait"][lv]["errors"])
        row(
            f"  server CPU ms/run c={level}",
            lambda r, lv=level: r["create_wait"][lv]["server_cpu_ms_per_run"],
        )
    row("first SSE event p50 ms", lambda r: r["sse"]["first_event"]["p50_ms"])
    row("first SSE event p95 ms", lambda r: r["sse"]["first_event"]["p95_ms"])
    row("first values event p50 ms", lambda r: r["sse"]["first_values"]["p50_ms"])
    row("first values event p95 ms", lambda r: r["sse"]["first_values"]["p95_ms"])
    row("idle RSS MB", lambda r: r["streams"]["idle_rss_kb"] / 1024)
    row("idle OS threads", lambda r: r["streams"]["idle_os_threads"])
    for level in map(str, args.stream_levels):
        row(
            f"RSS MB, {level} streams",
            lambda r, lv=level: r["streams"]["levels"][lv]["rss_kb"] / 1024,
        )
        row(
            f"  KB/stream, {level}", lambda r, lv=level: r["streams"]["levels"][lv]["kb_per_stream"]
        )
        row(f"  OS threads, {level}", lambda r, lv=level: r["streams"]["levels"][lv]["os_threads"])
        row(
            f"  server CPU % with {level} open",
            lambda r, lv=level: r["streams"]["levels"][lv]["idle_cpu_percent"],
        )
        row(
            f"  heartbeating/{level}",
            lambda r, lv=level: r["streams"]["levels"][lv]["heartbeat_in_window"],
        )
        row(
            f"  seconds to open {level}",
            lambda r, lv=level: r["streams"]["levels"][lv]["open_seconds"],
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    for name, entry in comparison.items():
        ratios = ", ".join(f"{k} {v}x" for k, v in entry["ratios_vs_reference"].items())
        lines.append(f"\n{name} / reference: {ratios or '-'}")
        for key, check in entry["targets"].items():
            verdict = {True: "MET", False: "MISSED", None: "not measured"}[check["met"]]
            lines.append(
                f"  target {key}: {fmt(check['value'], 2)} (target {check['target']}) {verdict}"
            )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    files = raise_file_limit(max(args.stream_levels or [0]) * 3 + 1024)
    log(f"file descriptor limit {files}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deerflow-bench-"))
    workdir.chmod(0o711)  # PostgreSQL runs as its own user and must reach its data dir below
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"logs and data in {workdir}")
    results: dict[str, Any] = {}
    began = time.monotonic()
    for name in args.server_names:
        log(f"{name}: starting")
        server_began = time.monotonic()
        try:
            with start(name, workdir, args) as server:
                log(f"{name}: {server.base_url} (pid {server.web.pid})")
                results[name] = asyncio.run(measure(server, workdir, args))
        except Exception as exc:  # one server failing must not lose the others' results
            log(f"{name}: failed: {exc!r}")
            results[name] = {"error": f"{exc!r}"[-2000:]}
        results[name]["elapsed_seconds"] = round(time.monotonic() - server_began, 1)
        write_report(args, results, began)  # after each server: a later crash keeps this one
    report = write_report(args, results, began)
    print(table(results, report["comparison"], args))
    log(f"wrote {args.output} in {report['elapsed_seconds']}s; logs in {workdir}")
    return 1 if any("error" in r for r in results.values()) else 0


def write_report(args: argparse.Namespace, results: dict[str, Any], began: float) -> dict:
    report = {
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
            if key not in {"output", "workdir", "server_names"}
        },
        "versions": versions(),
        "servers": results,
        "comparison": ratios_and_targets(results),
    }
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


if __name__ == "__main__":
    sys.exit(main())
