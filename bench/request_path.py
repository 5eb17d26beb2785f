"""CPU per request on the request path, in-process: the ASGI application driven with scopes.

    .venv/bin/python bench/request_path.py [--requests 400] [--rounds 3] [--layers]

No sockets, no daphne: each request is an ASGI scope, a `receive` that hands over the body (then
waits, as a client that stays connected does) and a `send` that keeps the messages. Measured, one
request at a time, on a fresh SQLite database in a temporary directory:

- `trivial`: an async Django view answering `JsonResponse({"ok": True})`, through the same
  application, middleware and handler (it lives in this script's own URLconf, which includes the
  served one; the served URLs are unchanged);
- `POST /threads`;
- `POST /threads/{t}/runs/wait` (the bench's create+wait: echo graph, an existing thread);
- `POST /threads/{t}/runs/stream` (the whole stream; also the first event's CPU and wall time).

For each: CPU µs per request (`time.process_time`, every thread of the process: the event loop,
request threads, the API pool, the engine's and the checkpointer's threads) and wall µs.
`--layers` profiles each endpoint instead (cProfile in every thread, timed by each thread's CPU
clock): the share of the profiled time (each function's own time) and the Python function calls
per request, per layer: Django's handler and request/response objects, its middleware,
corsheaders, asgiref, asyncio, thread hand-offs, DRF, LangGraph, SQLite, ours. cProfile's own
overhead inflates small functions, so read the shares, not the µs, of that part; the call counts
do not depend on the machine's load, which makes them the steadiest before/after comparison.
"""

import argparse
import asyncio
import cProfile
import json
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import inprocess

REPO = Path(__file__).resolve().parent.parent

#: The request headers httpx sends with a JSON body (the bench's and the SDKs' client).
CLIENT_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"user-agent", b"python-httpx/0.28.1"),
    (b"content-type", b"application/json"),
]

#: Layers, by the first pattern a profiled function's file (or a builtin's name) contains.
LAYERS = [
    ("django: middleware", ("django/middleware/", "django/contrib/", "deerflow_site/middleware")),
    ("corsheaders", ("corsheaders/",)),
    (
        "django: handler, request, response, urls",
        ("django/core/handlers/", "django/http/", "django/urls/", "deerflow_site/asgi.py"),
    ),
    ("django: signals, settings, utils", ("django/dispatch/", "django/conf/", "django/utils/")),
    ("django: db", ("django/db/",)),
    ("asgiref", ("asgiref/",)),
    (
        "thread hand-offs",
        (
            "concurrent/futures/",
            "threading.py",
            "queue.py",
            "deerflow_site/bridge.py",
            "<method 'acquire'",
            "<method 'put'",
            "<method 'get'",
            "<method 'release'",
        ),
    ),
    ("asyncio", ("asyncio/", "contextvars", "<method 'run'", "selectors.py")),
    ("DRF", ("rest_framework/",)),
    ("LangGraph, LangChain", ("langgraph/", "langchain_core/", "langsmith/")),
    ("SQLite", ("sqlite3",)),
    ("JSON", ("json/", "orjson", "ormsgpack")),
    ("ours: api", ("deerflow_site/",)),
    ("ours: runs, threads", ("/runs/", "/threads/")),
]


def configure() -> None:
    """`inprocess.configure()`, then this module's URLs served."""
    inprocess.configure()
    from django.conf import settings

    settings.ROOT_URLCONF = "bench.request_path"  # this module: the served URLs and `trivial`


# This module is also the URLconf while it measures (`urlpatterns` is made on first use).
def __getattr__(name: str) -> Any:
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.http import JsonResponse
    from django.urls import include, path

    async def trivial(request: Any) -> JsonResponse:
        return JsonResponse({"ok": True})

    patterns = [path("bench/trivial", trivial), path("", include("deerflow_site.urls"))]
    globals()["urlpatterns"] = patterns
    return patterns


class Exchange:
    """One request's ASGI `receive` and `send`."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status: int | None = None
        self.chunks: list[bytes] = []
        self.first_event_cpu: float | None = None
        self.first_event_wall: float | None = None
        self._delivered = False

    async def receive(self) -> dict[str, Any]:
        if not self._delivered:
            self._delivered = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            if self.first_event_cpu is None and chunk.startswith(b"event:"):
                self.first_event_cpu = time.process_time()
                self.first_event_wall = time.perf_counter()
            self.chunks.append(chunk)


def scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [*CLIENT_HEADERS, (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, method: str, path: str, payload: Any = None) -> Exchange:
    body = b"" if payload is None else json.dumps(payload).encode()
    exchange = Exchange(body)
    await app(scope(method, path, body), exchange.receive, exchange.send)
    if exchange.status not in (200, 201):
        raise RuntimeError(f"{method} {path}: {exchange.status} {b''.join(exchange.chunks)!r}")
    return exchange


def endpoints(app: Any, thread_id: str) -> dict[str, Callable[[int], Any]]:
    def run_body(i: int) -> dict[str, Any]:
        return {"assistant_id": "bench", "input": {"text": f"x{i}"}}

    async def trivial(i: int) -> Exchange:
        return await call(app, "GET", "/bench/trivial")

    async def threads(i: int) -> Exchange:
        return await call(app, "POST", "/api/threads", {})

    async def wait(i: int) -> Exchange:
        exchange = await call(app, "POST", f"/api/threads/{thread_id}/runs/wait", run_body(i))
        if json.loads(b"".join(exchange.chunks)).get("reply") != f"echo: x{i}":
            raise RuntimeError(f"unexpected answer: {exchange.chunks!r}")
        return exchange

    async def stream(i: int) -> Exchange:
        return await call(app, "POST", f"/api/threads/{thread_id}/runs/stream", run_body(i))

    return {"trivial": trivial, "threads": threads, "wait": wait, "stream": stream}


async def measure(app: Any, request: Callable[[int], Any], count: int) -> dict[str, float]:
    """CPU and wall µs per request (medians of the per-request figures), one at a time."""
    cpu, wall, first, first_wall = [], [], [], []
    for i in range(count):
        c0, w0 = time.process_time(), time.perf_counter()
        exchange = await request(i)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        if exchange.first_event_cpu is not None:
            first.append(exchange.first_event_cpu - c0)
            first_wall.append(exchange.first_event_wall - w0)
    out = {
        "cpu_us": 1e6 * statistics.fmean(cpu),
        "cpu_p50_us": 1e6 * statistics.median(cpu),
        "wall_p50_us": 1e6 * statistics.median(wall),
    }
    if first:
        out["first_event_cpu_p50_us"] = 1e6 * statistics.median(first)
        out["first_event_wall_p50_us"] = 1e6 * statistics.median(first_wall)
    return out


class ThreadProfiles:
    """cProfile in every thread started while it is on, and in the calling one.

    Pools make their threads on first use, so profiling starts before the warm-up; `clear()`
    then drops what was counted so far (between requests, when the other threads are idle)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_here(self, *args: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)  # CPU time: waits count nothing
        with self._lock:
            self.profiles.append(profile)
        profile.enable()

    def __enter__(self) -> "ThreadProfiles":
        threading.setprofile(self._start_here)
        self._start_here()
        return self

    def __exit__(self, *exc: Any) -> None:
        threading.setprofile(None)
        self.profiles[0].disable()  # the calling thread's; the others end with their threads

    def clear(self) -> None:
        for profile in self.profiles:
            profile.clear()

    def own_times(self) -> tuple[Counter[str], Counter[str]]:
        """Own time (s) and calls per function key `file:name`, over every thread."""
        times: Counter[str] = Counter()
        calls: Counter[str] = Counter()
        for profile in self.profiles:
            profile.snapshot_stats()
            for (file, _, name), (_, count, tottime, _, _) in profile.stats.items():  # type: ignore[attr-defined]
                times[f"{file}:{name}"] += tottime
                calls[f"{file}:{name}"] += count
        return times, calls


def layer_of(key: str) -> str:
    for layer, patterns in LAYERS:
        if any(p in key for p in patterns):
            return layer
    return "other: " + key.rsplit(":", 1)[-1][:40] if key.startswith("~") else "other"


def print_layers(times: Counter[str], calls: Counter[str], requests: int, top: int) -> None:
    total = sum(times.values())
    by_layer: Counter[str] = Counter()
    calls_by_layer: Counter[str] = Counter()
    for key, seconds in times.items():
        by_layer[layer_of(key)] += seconds
        calls_by_layer[layer_of(key)] += calls[key]
    print(
        f"    profiled own time {1e6 * total / requests:.0f} µs/request (with cProfile's cost),"
        f" {sum(calls.values()) / requests:.0f} function calls/request"
    )
    for layer, seconds in by_layer.most_common(14):
        per_request = calls_by_layer[layer] / requests
        print(f"    {100 * seconds / total:5.1f} %  {per_request:6.0f} calls  {layer}")
    if top:
        print("    top functions:")
        for key, seconds in times.most_common(top):
            print(f"    {100 * seconds / total:5.1f} %  {key.replace(str(REPO) + '/', '')}")


async def main_async(args: argparse.Namespace) -> None:
    from deerflow_site.asgi import application

    profiles = ThreadProfiles()
    if args.layers:
        profiles.__enter__()  # before the first request makes the pools' threads
    thread = await call(application, "POST", "/api/threads", {})
    thread_id = json.loads(b"".join(thread.chunks))["thread_id"]
    chosen = endpoints(application, thread_id)
    names = args.only or list(chosen)
    if args.layers:
        for name in names:  # warm-up of all first: the worker loads the graph on its own time
            await measure(application, chosen[name], 30)
        for name in names:
            await measure(application, chosen[name], 5)
            profiles.clear()
            await measure(application, chosen[name], args.requests)
            print(f"{name}:")
            print_layers(*profiles.own_times(), args.requests, args.top)
        profiles.__exit__()
        return
    for name in names:  # warm-up
        await measure(application, chosen[name], 30)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            results[name].append(await measure(application, chosen[name], args.requests))
    for name, rounds in results.items():
        cells = ", ".join(
            f"{key} " + "/".join(f"{r[key]:.0f}" for r in rounds) for key in rounds[0]
        )
        print(f"{name:8} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per endpoint and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=["trivial", "threads", "wait", "stream"])
    parser.add_argument("--layers", action="store_true", help="profile each endpoint's layers")
    parser.add_argument("--top", type=int, default=0, help="with --layers: the top functions")
    args = parser.parse_args()
    configure()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
