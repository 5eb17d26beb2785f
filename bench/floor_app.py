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
"""

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

application = get_asgi_application()

from bench.graph import graph as echo_graph  # noqa: E402  (Django is set up above)
from runs.engine.sqlite_saver import SqliteSaver, open_sqlite_saver  # noqa: E402

#: The saver's file, in the server's var directory.
CHECKPOINTS = Path(os.environ.get("DEERFLOW_VAR_DIR", ".")) / "floor-checkpoints.sqlite3"
_graph: Any = None
_opening: asyncio.Lock | None = None


async def _bound_graph() -> Any:
    """The echo graph bound to the saver, opened once on the serving loop."""
    global _graph, _opening
    if _graph is not None:
        return _graph
    if _opening is None:
        _opening = asyncio.Lock()
    async with _opening:
        if _graph is None:
            saver: SqliteSaver = await open_sqlite_saver(str(CHECKPOINTS), busy_timeout=20.0)
            _graph = echo_graph.copy(update={"checkpointer": saver})
    return _graph


async def ok(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


async def create_thread(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"thread_id": str(uuid.uuid4())})


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
    graph = await _bound_graph()
    config = {"configurable": {"thread_id": str(thread_id)}}
    values: Any = None
    async for chunk in graph.astream(found, config, stream_mode="values"):
        values = chunk
    return JsonResponse(values, safe=False)


async def stream(request: HttpRequest, thread_id: uuid.UUID) -> Any:
    found = _input(request)
    if isinstance(found, JsonResponse):
        return found

    async def events() -> Any:
        yield b"event: metadata\ndata: " + json.dumps({"run_id": str(uuid.uuid4())}).encode()
        yield b"\n\n"
        graph = await _bound_graph()
        config = {"configurable": {"thread_id": str(thread_id)}}
        async for chunk in graph.astream(found, config, stream_mode="values"):
            yield b"event: values\ndata: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"event: end\ndata: null\n\n"

    return StreamingHttpResponse(events(), content_type="text/event-stream")


urlpatterns = [
    path("api/ok", ok),
    path("api/threads", create_thread),
    path("api/threads/<uuid:thread_id>/runs/wait", wait),
    path("api/threads/<uuid:thread_id>/runs/stream", stream),
]
