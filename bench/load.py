"""The measurements, with httpx on asyncio against one server's base URL (loopback only).

Every loop is bounded by a duration and a request cap; nothing here retries forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

GRAPH_ID = "bench"
#: A run of the memory phase sleeps this long: far beyond the phase, so that its stream stays open.
STREAM_RUN_SLEEP_SECONDS = 900.0
MAX_REQUESTS_PER_LEVEL = 20_000
#: Open streams per httpx client in the memory phase.
STREAMS_PER_POOL = 100


def client(base_url: str, *, connections: int, timeout: float = 60.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        trust_env=False,  # no proxy from the environment: loopback, directly
        timeout=httpx.Timeout(timeout, read=None),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: list[float]) -> dict[str, float | None]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": percentile(ms, 0.50),
        "p95_ms": percentile(ms, 0.95),
        "mean_ms": statistics.fmean(ms) if ms else None,
        "max_ms": max(ms) if ms else None,
    }


async def create_thread(http: httpx.AsyncClient) -> str:
    response = await http.post("/threads", json={})
    response.raise_for_status()
    return response.json()["thread_id"]


# --- create + wait ---------------------------------------------------------------------------


async def create_wait(
    base_url: str, *, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    """`concurrency` clients, each on its own thread, POST /threads/{t}/runs/wait back to back.

    Runs finished inside the measured window (after `warmup`) count; runs/second is their number
    over the window. A 200 whose answer is not the graph's echo counts as an error.
    """
    async with client(base_url, connections=concurrency + 4) as http:
        try:
            threads = await asyncio.gather(*(create_thread(http) for _ in range(concurrency)))
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return {"concurrency": concurrency, "error": f"POST /threads: {exc!r}"[:500]}
        started = time.monotonic()
        window_start, window_end = started + warmup, started + warmup + duration
        latencies: list[float] = []
        errors: list[str] = []
        sent = itertools.count()
        answered = 0  # inside the window or not: for the server's CPU time per run

        async def one_client(index: int, thread_id: str) -> None:
            nonlocal answered
            for n in itertools.count():
                if time.monotonic() >= window_end or next(sent) >= MAX_REQUESTS_PER_LEVEL:
                    return
                text = f"c{index}-{n}"
                body = {"assistant_id": GRAPH_ID, "input": {"text": text}}
                began = time.monotonic()
                try:
                    response = await http.post(f"/threads/{thread_id}/runs/wait", json=body)
                    ok = response.status_code == 200 and (
                        response.json().get("reply") == f"echo: {text}"
                    )
                    problem = "" if ok else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                ended = time.monotonic()
                answered += not problem
                if window_start <= began and ended <= window_end:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies.append(ended - began)
                if problem:
                    await asyncio.sleep(0.05)  # a failing server must not be hammered in a spin

        await asyncio.gather(*(one_client(i, t) for i, t in enumerate(threads)))
    return {
        "concurrency": concurrency,
        "window_seconds": duration,
        "completed": len(latencies),
        "answered_in_all": answered,
        "errors": len(errors),
        "first_errors": errors[:3],
        "runs_per_second": len(latencies) / duration,
        **summary_ms(latencies),
    }


# --- SSE -------------------------------------------------------------------------------------


@dataclass
class StreamProbe:
    """What one open SSE response has delivered so far."""

    opened_at: float = 0.0
    first_event_at: float | None = None
    first_values_at: float | None = None
    events: list[str] = field(default_factory=list)
    #: The data of the last event of each name (the realistic workload checks the final `values`).
    last_data: dict[str, bytes] = field(default_factory=dict)
    #: When the first event of each name arrived (monotonic seconds).
    first_at: dict[str, float] = field(default_factory=dict)
    heartbeats: int = 0
    headers_at: float | None = None
    status: int | None = None
    error: str | None = None
    ended: bool = False
    opened: asyncio.Event = field(default_factory=asyncio.Event)


def _feed(probe: StreamProbe, buffer: bytearray, chunk: bytes, now: float) -> None:
    """Parse complete SSE blocks out of buffer + chunk into the probe."""
    buffer += chunk.replace(b"\r\n", b"\n")
    while (cut := buffer.find(b"\n\n")) >= 0:
        block, buffer[:] = bytes(buffer[:cut]), buffer[cut + 2 :]
        lines = [line for line in block.split(b"\n") if line]
        if lines and all(line.startswith(b":") for line in lines):
            probe.heartbeats += 1
            continue
        name = next(
            (line[6:].strip().decode() for line in lines if line.startswith(b"event:")), None
        )
        if name is None:
            continue
        probe.events.append(name)
        probe.first_at.setdefault(name, now)
        probe.last_data[name] = b"\n".join(
            line[5:].strip() for line in lines if line.startswith(b"data:")
        )
        if probe.first_event_at is None:
            probe.first_event_at = now
        if name == "values" and probe.first_values_at is None:
            probe.first_values_at = now
        if name == "end":
            probe.ended = True


async def read_stream(
    http: httpx.AsyncClient, path: str, body: dict | None, probe: StreamProbe
) -> None:
    """POST (with a body) or GET an SSE request; feed what it sends into probe until it ends."""
    probe.opened_at = time.monotonic()
    buffer = bytearray()
    method = "GET" if body is None else "POST"
    try:
        headers = {"accept": "text/event-stream"}
        async with http.stream(method, path, json=body, headers=headers) as response:
            probe.status = response.status_code
            if response.status_code != 200:
                probe.error = f"{response.status_code} {(await response.aread())[:200]!r}"
                return
            # Open: the reference sends its first event only once a pending run starts.
            probe.headers_at = time.monotonic()
            probe.opened.set()
            async for chunk in response.aiter_raw():
                _feed(probe, buffer, chunk, time.monotonic())
    except httpx.HTTPError as exc:
        probe.error = f"{type(exc).__name__}: {exc}"
    finally:
        probe.opened.set()


async def first_event(
    base_url: str, *, samples: int, max_seconds: float, per_stream_seconds: float = 30.0
) -> dict[str, Any]:
    """Sequential POST /threads/{t}/runs/stream: time to the first SSE event and to `values`.

    Each stream is read to its end before the next starts; at most `max_seconds` in all.
    """
    async with client(base_url, connections=4) as http:
        try:
            thread_id = await create_thread(http)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return {"error": f"POST /threads: {exc!r}"[:500]}
        to_first: list[float] = []
        to_values: list[float] = []
        errors: list[str] = []
        deadline = time.monotonic() + max_seconds
        for n in range(samples):
            if time.monotonic() > deadline:
                break
            probe = StreamProbe()
            body = {
                "assistant_id": GRAPH_ID,
                "input": {"text": f"s{n}"},
                "stream_mode": ["values"],
            }
            try:
                await asyncio.wait_for(
                    read_stream(http, f"/threads/{thread_id}/runs/stream", body, probe),
                    per_stream_seconds,
                )
            except TimeoutError:
                probe.error = probe.error or "timeout"
            if probe.error or probe.first_event_at is None or "values" not in probe.events:
                errors.append(probe.error or f"events {probe.events}")
                continue
            to_first.append(probe.first_event_at - probe.opened_at)
            if probe.first_values_at is not None:
                to_values.append(probe.first_values_at - probe.opened_at)
    return {
        "samples": len(to_first) + len(errors),
        "errors": len(errors),
        "first_errors": errors[:3],
        "first_event": summary_ms(to_first),
        "first_values": summary_ms(to_values),
    }


async def _median_rss(rss: Callable[[], int], *, samples: int = 3, gap: float = 0.5) -> int:
    values = []
    for n in range(samples):
        if n:
            await asyncio.sleep(gap)
        values.append(rss())
    return int(statistics.median(values))


@dataclass
class ProcessProbe:
    """Reads of the server's process tree: RSS bytes, OS threads, CPU seconds used so far."""

    rss: Callable[[], int]
    threads: Callable[[], int]
    cpu_seconds: Callable[[], float]


async def _start_sleeping_runs(http: httpx.AsyncClient, count: int) -> list[tuple[str, str]]:
    """`count` runs that sleep far beyond the phase, each on its own thread, once all run."""
    runs = []
    for n in range(count):
        thread_id = await create_thread(http)
        body = {
            "assistant_id": GRAPH_ID,
            "input": {"text": f"m{n}", "sleep": STREAM_RUN_SLEEP_SECONDS},
        }
        response = await http.post(f"/threads/{thread_id}/runs", json=body)
        response.raise_for_status()
        runs.append((thread_id, response.json()["run_id"]))
    deadline = time.monotonic() + 30.0
    for thread_id, run_id in runs:
        while True:
            status = (await http.get(f"/threads/{thread_id}/runs/{run_id}")).json().get("status")
            if status == "running":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} is {status!r}, not running, after 30s")
            await asyncio.sleep(0.2)
    return runs


async def open_streams(
    base_url: str,
    *,
    levels: list[int],
    server: ProcessProbe,
    heartbeat_window: float,
    open_concurrency: int,
    open_timeout: float,
    level_open_seconds: float,
    runs: int = 10,
) -> dict[str, Any]:
    """Hold up to `levels[-1]` SSE streams open; the server's RSS and CPU at each level.

    The streams join (GET /threads/{t}/runs/{r}/stream) `runs` runs that sleep: as many as both
    servers execute at once, so every stream is a live one of a running run. A stream counts as
    open when its 200 arrived; at each level the streams are watched for `heartbeat_window`
    seconds, and one that received nothing in the window is not open. Opening a level stops
    after `level_open_seconds`: the level is then reported with the streams opened so far
    (`"incomplete": true`) and the levels above it are not tried.
    """
    # httpcore's pool scans all of its connections for each request and each closing
    # response: one pool of 10,000 makes opening quadratic, so the streams share small pools.
    pools = [
        client(base_url, connections=STREAMS_PER_POOL + 4)
        for _ in range(-(-max(levels) // STREAMS_PER_POOL))
    ]
    async with contextlib.AsyncExitStack() as stack:
        for pool in pools:
            await stack.enter_async_context(pool)
        http = pools[0]
        targets = await _start_sleeping_runs(http, runs)
        await asyncio.sleep(1.0)
        idle = await _median_rss(server.rss)
        probes: list[StreamProbe] = []
        tasks: list[asyncio.Task] = []
        gate = asyncio.Semaphore(open_concurrency)
        result: dict[str, Any] = {
            "joined_runs": runs,
            "idle_rss_kb": idle // 1024,
            "idle_rss_mb": round(idle / 2**20, 1),
            "idle_os_threads": server.threads(),
            "levels": {},
        }

        deadline = 0.0

        async def open_one(n: int) -> None:
            async with gate:
                if time.monotonic() > deadline:
                    return
                probe = StreamProbe()
                probes.append(probe)
                thread_id, run_id = targets[n % len(targets)]
                path = f"/threads/{thread_id}/runs/{run_id}/stream"
                pool = pools[n // STREAMS_PER_POOL]
                tasks.append(asyncio.create_task(read_stream(pool, path, None, probe)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(probe.opened.wait(), open_timeout)

        try:
            opened_so_far = 0
            for level in levels:
                began = time.monotonic()
                deadline = began + level_open_seconds
                client_cpu_before = time.process_time()
                server_cpu_before = server.cpu_seconds()
                await asyncio.gather(*(open_one(n) for n in range(opened_so_far, level)))
                opened_so_far = len(probes)
                open_seconds = time.monotonic() - began
                # Is the load generator (one process) what limits the opening rate?
                client_cpu = 100 * (time.process_time() - client_cpu_before) / open_seconds
                server_cpu = 100 * (server.cpu_seconds() - server_cpu_before) / open_seconds
                beats_before = [p.heartbeats for p in probes]
                cpu_before = server.cpu_seconds()
                await asyncio.sleep(heartbeat_window)
                cpu_percent = 100 * (server.cpu_seconds() - cpu_before) / heartbeat_window
                alive = sum(
                    1
                    for p, before in zip(probes, beats_before, strict=True)
                    if p.error is None and p.heartbeats > before
                )
                with_rss = await _median_rss(server.rss)
                errors = [p.error for p in probes if p.error]
                result["levels"][str(level)] = {
                    "streams": len(probes),
                    "incomplete": len(probes) < level,
                    "open_seconds": round(open_seconds, 2),
                    "load_generator_cpu_percent_opening": round(client_cpu, 1),
                    "server_cpu_percent_opening": round(server_cpu, 1),
                    "opened": sum(1 for p in probes if p.headers_at is not None),
                    "heartbeat_in_window": alive,
                    "errors": len(errors),
                    "first_errors": errors[:3],
                    "rss_kb": with_rss // 1024,
                    "rss_mb": round(with_rss / 2**20, 1),
                    "os_threads": server.threads(),
                    "idle_cpu_percent": round(cpu_percent, 1),
                    "kb_per_stream": (with_rss - idle) / 1024 / max(len(probes), 1),
                }
                if len(probes) < level:
                    break  # the server could not take this level in time: no higher one
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return result
