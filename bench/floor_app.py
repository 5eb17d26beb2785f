"""The stack's floor, served over HTTP: what a create+wait run costs with nothing of ours in it.

    DJANGO_SETTINGS_MODULE=bench.floor_settings \
        python -m deerflow_site.server -b 127.0.0.1 -p 8123 bench.floor_app:application

bench/run's `floor` server. The same daphne (with `deerflow_site.server`'s settled heap), the
same Django and the same installed apps as our server, but Django's own ASGI handler, no
middleware, and four plain async views:

- `GET /api/ok`: `{"ok": true}` (readiness);
- `POST /api/threads`: `{"thread_id": <uuid4>}`, nothing stored;
- `POST /api/threads/<thread_id>/runs/wait`: the body's `input` through the echo graph
  (`bench/graph.py`) with our SQLite checkpoint saver (`runs.engine.sqlite_saver`, LangGraph's
  `SqliteSaver` one hop per operation, the checkpoints committed as LangGraph asks), answering
  the last `values`;
- `POST /api/threads/<thread_id>/runs/stream`: the same run as SSE, a `metadata` event
  (`{"run_id"}`) first, then each `values`, then `end`.

No run row, no thread row, no owner, no auth, no journal, no status, no worker, no queue: a
run's floor is one request through daphne and Django plus the graph and its checkpoints. Our
server's CPU per run minus this one's is what the durable run record and the API around it
cost. 4xx answers for a body that is not a JSON object with an object `input`.

With `FLOOR_DURABLE=1` (bench/run's `floor-durable` server) it also keeps the least record a
run needs to survive a crash, as plain SQL on Python's sqlite3 in a file of its own (WAL,
`synchronous=NORMAL`, as our database), on one database thread (the bridge's engine thread):
`POST /threads` inserts the thread's row; a run inserts its row `running` and marks its
thread busy in one transaction committed before the graph runs, and after it sets the run's
final status and the thread idle in a second. No owner, no auth, no journal, no queue, no
worker: what the durable record costs at the least, in the same stack.
"""

import asyncio
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

application = get_asgi_application()

from bench.graph import graph as echo_graph  # noqa: E402  (Django is set up above)
from deerflow_site.bridge import Executor, call_sync  # noqa: E402
from runs.engine.sqlite_saver import SqliteSaver, open_sqlite_saver  # noqa: E402

T = TypeVar("T")

#: The saver's file, in the server's var directory.
CHECKPOINTS = Path(os.environ.get("DEERFLOW_VAR_DIR", ".")) / "floor-checkpoints.sqlite3"

#: `floor-durable`: the run and thread rows, in a file of their own.
DURABLE = os.environ.get("FLOOR_DURABLE") == "1"
RECORD = CHECKPOINTS.with_name("floor-record.sqlite3")
SCHEMA = """
PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;
CREATE TABLE IF NOT EXISTS thread (thread_id TEXT PRIMARY KEY, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS run (run_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL,
    status TEXT NOT NULL, input TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);
"""
#: The record's connection, made on the one thread its statements run on (the bridge's engine
#: thread, as our run's end).
_record: sqlite3.Connection | None = None


def _record_connection() -> sqlite3.Connection:
    global _record
    if _record is None:
        _record = sqlite3.connect(str(RECORD), isolation_level=None, check_same_thread=False)
        _record.executescript(SCHEMA)
    return _record


def _write(statements: tuple[tuple[str, tuple[Any, ...]], ...]) -> None:
    """The statements in one transaction, committed."""
    db = _record_connection()
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            db.execute(sql, params)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


async def _record_write(*statements: tuple[str, tuple[Any, ...]]) -> None:
    if DURABLE:
        await call_sync(_write, statements, on=Executor.ENGINE)


async def _run_started(run_id: str, thread_id: str, found: dict[str, Any]) -> None:
    now = time.time()
    await _record_write(
        (
            "INSERT INTO run (run_id, thread_id, status, input, created_at, updated_at)"
            " VALUES (?, ?, 'running', ?, ?, ?)",
            (run_id, thread_id, json.dumps(found), now, now),
        ),
        ("UPDATE thread SET status = 'busy', updated_at = ? WHERE thread_id = ?", (now, thread_id)),
    )


async def _run_ended(run_id: str, thread_id: str) -> None:
    now = time.time()
    await _record_write(
        ("UPDATE run SET status = 'success', updated_at = ? WHERE run_id = ?", (now, run_id)),
        ("UPDATE thread SET status = 'idle', updated_at = ? WHERE thread_id = ?", (now, thread_id)),
    )


def opened_once(open_: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """An async getter of what `open_` opens, opened once (on the first caller's loop)."""
    opened: list[T] = []
    opening: list[asyncio.Lock] = []

    async def get() -> T:
        if opened:
            return opened[0]
        if not opening:
            opening.append(asyncio.Lock())
        async with opening[0]:
            if not opened:
                opened.append(await open_())
        return opened[0]

    return get


async def _open_graph() -> Any:
    saver: SqliteSaver = await open_sqlite_saver(str(CHECKPOINTS), busy_timeout=20.0)
    return echo_graph.copy(update={"checkpointer": saver})


#: The echo graph bound to the saver, opened once on the serving loop.
_bound_graph = opened_once(_open_graph)


async def ok(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


async def create_thread(request: HttpRequest) -> JsonResponse:
    thread_id = str(uuid.uuid4())
    now = time.time()
    await _record_write(
        (
            "INSERT INTO thread (thread_id, status, created_at, updated_at)"
            " VALUES (?, 'idle', ?, ?)",
            (thread_id, now, now),
        )
    )
    return JsonResponse({"thread_id": thread_id})


def _input(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    """The body's `input`, or the 4xx answer for a body without one."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"detail": "The body is not JSON."}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return JsonResponse({"detail": "`input` must be an object."}, status=422)
    return body["input"]


async def wait(request: HttpRequest, thread_id: uuid.UUID) -> JsonResponse:
    found = _input(request)
    if isinstance(found, JsonResponse):
        return found
    run_id, thread = str(uuid.uuid4()), str(thread_id)
    await _run_started(run_id, thread, found)
    graph = await _bound_graph()
    config = {"configurable": {"thread_id": thread}}
    values: Any = None
    async for chunk in graph.astream(found, config, stream_mode="values"):
        values = chunk
    await _run_ended(run_id, thread)
    return JsonResponse(values, safe=False)


async def stream(request: HttpRequest, thread_id: uuid.UUID) -> Any:
    found = _input(request)
    if isinstance(found, JsonResponse):
        return found

    run_id, thread = str(uuid.uuid4()), str(thread_id)
    await _run_started(run_id, thread, found)

    async def events() -> Any:
        yield b"event: metadata\ndata: " + json.dumps({"run_id": run_id}).encode()
        yield b"\n\n"
        graph = await _bound_graph()
        config = {"configurable": {"thread_id": thread}}
        async for chunk in graph.astream(found, config, stream_mode="values"):
            yield b"event: values\ndata: " + json.dumps(chunk).encode() + b"\n\n"
        await _run_ended(run_id, thread)
        yield b"event: end\ndata: null\n\n"

    return StreamingHttpResponse(events(), content_type="text/event-stream")


urlpatterns = [
    path("api/ok", ok),
    path("api/threads", create_thread),
    path("api/threads/<uuid:thread_id>/runs/wait", wait),
    path("api/threads/<uuid:thread_id>/runs/stream", stream),
]
