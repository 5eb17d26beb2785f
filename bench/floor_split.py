"""The stack's floor on the split layout: a web process and a worker process on PostgreSQL +
Redis, with nothing of ours in between.

    DJANGO_SETTINGS_MODULE=bench.floor_settings FLOOR_URLCONF=bench.floor_split \
        python -m deerflow_site.server -b 127.0.0.1 -p 8123 bench.floor_split:application
    DJANGO_SETTINGS_MODULE=bench.floor_settings python -m bench.floor_split runs_worker
    DJANGO_SETTINGS_MODULE=bench.floor_settings python -m bench.floor_split setup

bench/run's `floor-split` server (DATABASE_URL and REDIS_URL from scripts/services.py). What
`ours-postgres-split` does for a create+wait run, at the least the stack allows:

- web (the floor's daphne and Django, no middleware, plain async views as bench/floor_app.py):
  `POST /api/threads` inserts the thread's row; `POST /api/threads/<id>/runs/wait` inserts the
  run's row `pending` and marks its thread busy in one transaction (psycopg's async pool, plain
  SQL), sends the run's id and the process's reply channel to the worker's channel
  (channels_redis's own `RedisChannelLayer`, one message: the least a queue's wake-up needs),
  and answers the last `values` the reply brings (one listener per process receives on its
  reply channel and hands each reply to its request by run id, as our hub does: channels_redis's
  receive on a channel per request costs each waiter a task and a turn at the layer's lock);
- worker (`runs_worker`, one process, up to DEERFLOW_WORKER_CONCURRENCY runs at a time): receives
  a run's message, claims its row (`UPDATE ... RETURNING`), runs the echo graph
  (bench/graph.py) with our PostgreSQL saver (`runs.engine.postgres_saver`: LangGraph's
  `PostgresSaver`, each operation one call on its thread, as our worker uses it), sets the
  run's final status and the thread idle in one transaction and sends the last `values` to the
  reply channel.

No owner, no auth, no journal, no lease, no events fan-out, no listeners, no thread lookup: a
split run's floor is these two processes' stack. 4xx answers as bench/floor_app.py's.
"""

import asyncio
import os
import sys
import uuid
from typing import Any

if __name__ == "__main__":  # the worker and the setup: Django set up as the web process has it
    import django

    django.setup()
    application = None
else:
    from django.core.asgi import get_asgi_application

    application = get_asgi_application()

import psycopg
from channels_redis.core import RedisChannelLayer
from django.http import HttpRequest, JsonResponse
from django.urls import path
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bench.floor_app import _input, ok, opened_once
from bench.graph import graph as echo_graph

#: The worker's channel: every run's message goes there (a queue of one consumer).
WORKER_CHANNEL = "floor-split-runs"
CONCURRENCY = int(os.environ.get("DEERFLOW_WORKER_CONCURRENCY", "10"))  # as our worker's
POOL_SIZE = 16
SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_thread (thread_id uuid PRIMARY KEY, status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS floor_run (run_id uuid PRIMARY KEY, thread_id uuid NOT NULL,
    status text NOT NULL, input jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
"""
#: Connections as our saver's (autocommit, no prepared statements: fit for a PgBouncer).
CONNECTION = {"autocommit": True, "prepare_threshold": None}

layer = RedisChannelLayer(hosts=[os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")])


def _database_url() -> str:
    return os.environ["DATABASE_URL"]


async def _open_pool() -> AsyncConnectionPool:
    opened = AsyncConnectionPool(
        _database_url(), kwargs=CONNECTION, min_size=1, max_size=POOL_SIZE, open=False
    )
    await opened.open(wait=True)
    return opened


#: The process's connection pool, opened once on its loop.
pool = opened_once(_open_pool)


class Replies:
    """The web process's reply channel: one listener hands each reply to its request."""

    def __init__(self) -> None:
        self.channel = ""
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.listener: asyncio.Task[None] | None = None

    async def expect(self, run_id: str) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        """The channel to send `run_id`'s reply to, and the future it resolves."""
        if self.listener is None:
            self.channel = await layer.new_channel()
            self.listener = asyncio.create_task(self.listen())
        answered = self.waiting[run_id] = asyncio.get_running_loop().create_future()
        return self.channel, answered

    async def listen(self) -> None:
        while True:
            message = await layer.receive(self.channel)
            answered = self.waiting.pop(message["run_id"], None)
            if answered is not None and not answered.done():
                answered.set_result(message)


replies = Replies()


async def create_thread(request: HttpRequest) -> JsonResponse:
    thread_id = uuid.uuid4()
    async with (await pool()).connection() as conn:
        await conn.execute(
            "INSERT INTO floor_thread (thread_id, status) VALUES (%s, 'idle')", (thread_id,)
        )
    return JsonResponse({"thread_id": str(thread_id)})


async def wait(request: HttpRequest, thread_id: uuid.UUID) -> JsonResponse:
    found = _input(request)
    if isinstance(found, JsonResponse):
        return found
    run_id = uuid.uuid4()
    async with (await pool()).connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO floor_run (run_id, thread_id, status, input)"
            " VALUES (%s, %s, 'pending', %s)",
            (run_id, thread_id, Jsonb(found)),
        )
        await conn.execute(
            "UPDATE floor_thread SET status = 'busy', updated_at = now() WHERE thread_id = %s",
            (thread_id,),
        )
    reply, answered = await replies.expect(str(run_id))
    await layer.send(WORKER_CHANNEL, {"type": "run", "run_id": str(run_id), "reply": reply})
    try:
        answer = await answered
    finally:
        replies.waiting.pop(str(run_id), None)
    return JsonResponse(answer["values"], safe=False, status=answer["status"])


urlpatterns = [
    path("api/ok", ok),
    path("api/threads", create_thread),
    path("api/threads/<uuid:thread_id>/runs/wait", wait),
]


async def run(graph: Any, message: dict[str, Any]) -> None:
    """One run: claimed, its graph run, its end written, its last `values` sent back."""
    database = await pool()
    async with database.connection() as conn:
        cursor = await conn.execute(
            "UPDATE floor_run SET status = 'running', updated_at = now()"
            " WHERE run_id = %s AND status = 'pending' RETURNING thread_id, input",
            (message["run_id"],),
        )
        claimed = await cursor.fetchone()
    if claimed is None:
        return
    thread_id, found = claimed
    config = {"configurable": {"thread_id": str(thread_id)}}
    values: Any = None
    status = "success"
    try:
        async for chunk in graph.astream(found, config, stream_mode="values"):
            values = chunk
    except Exception as exc:  # the floor's runs do not fail; should one, it says so
        status, values = "error", {"__error__": repr(exc)}
    async with database.connection() as conn, conn.transaction():
        await conn.execute(
            "UPDATE floor_run SET status = %s, updated_at = now() WHERE run_id = %s",
            (status, message["run_id"]),
        )
        await conn.execute(
            "UPDATE floor_thread SET status = 'idle', updated_at = now() WHERE thread_id = %s",
            (thread_id,),
        )
    code = 200 if status == "success" else 500
    await layer.send(
        message["reply"],
        {"type": "end", "run_id": message["run_id"], "values": values, "status": code},
    )


async def work() -> None:
    """The worker: up to CONCURRENCY runs at a time, each taken from WORKER_CHANNEL."""
    from runs.engine.postgres_saver import open_postgres_saver

    saver = await open_postgres_saver(_database_url())
    graph = echo_graph.copy(update={"checkpointer": saver})
    await pool()
    slots = asyncio.Semaphore(CONCURRENCY)
    running: set[asyncio.Task[None]] = set()

    def done(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            print(f"floor-split worker: {task.exception()!r}", file=sys.stderr, flush=True)

    while True:
        await slots.acquire()
        message = await layer.receive(WORKER_CHANNEL)
        task = asyncio.create_task(run(graph, message))
        running.add(task)
        task.add_done_callback(done)


async def setup() -> None:
    """The floor's two tables and the saver's (once, before either process starts)."""
    from runs.engine.checkpointer import _setup_postgres

    await _setup_postgres(_database_url())
    async with await psycopg.AsyncConnection.connect(_database_url(), **CONNECTION) as conn:
        await conn.execute(SCHEMA)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("runs_worker", "setup"):
        sys.exit("usage: python -m bench.floor_split runs_worker|setup")
    asyncio.run(work() if command == "runs_worker" else setup())
