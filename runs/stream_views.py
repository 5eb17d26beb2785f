"""Run endpoints that hold the connection: create-and-stream, wait, thread stream (the joins of
a run are in `runs.join_views`), and what they share with the joins.

Each subscribes to the bus before it could miss anything (before admitting the run, or before
reading a run it joins), answers errors found before streaming as JSON, then streams.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from deerflow_site.api.async_views import api_view, authenticate_in_view, json_body
from deerflow_site.api.ids import validate_thread_id
from deerflow_site.api.schema import event_stream
from deerflow_site.bridge import Executor, call_sync
from deerflow_site.dbcompat import is_postgresql
from deerflow_site.streaming import BytesStreamingResponse
from runs import admission
from runs.cancellation import AdmissionWatch
from runs.create_serializers import (
    ADMISSION_ERRORS,
    STREAM_MODES,
    THREAD_STREAM_MODES,
    RunCreateSerializer,
    parse_run_create,
    parse_stateless_run_create,
    parse_stream_modes,
)
from runs.engine import Subscription, answers, bus, subscribe_then
from runs.exceptions import NeedsAnotherThread
from runs.models import Run
from runs.sse.access import ViewRight
from runs.sse.frames import sse_response
from runs.sse.run_stream import announce_to_thread_runs, stream_run_events
from runs.sse.thread_stream import (
    ThreadCursor,
    check_cursor,
    stream_thread_events,
    thread_event_filter,
)
from runs.sse.waiting import final_answer_body
from threads.selectors import get_thread

#: The events of a run's stream, as the API documents them.
RUN_STREAM_EVENTS = (
    "Server-Sent Events, each `event: <name>`, `data: <one line of JSON>`, `id: <id>`. First "
    "`metadata` ({run_id, thread_id, attempt}); then one event per chunk of each stream mode: "
    "`values`, `updates`, `messages` (messages-tuple), `messages/partial`, `messages/complete`, "
    "`messages/metadata` (messages), `custom`, `events`, `debug`, `tasks`, `checkpoints` "
    "(`<mode>|<namespace>` from subgraphs with stream_subgraphs); `error` ({error, message}) if "
    "the graph fails; `gap` when a `Last-Event-ID` is older than what is kept; `end` (data null) "
    "last. `: heartbeat` comments keep an idle connection open."
)
THREAD_STREAM_EVENTS = (
    "Server-Sent Events of every run of the thread as they come: each run's `metadata`, its "
    "stream-mode events and its `end` (as on a run's stream); `stream_mode=lifecycle` keeps only "
    "the runs' `metadata` and `end`. `Last-Event-ID` resumes after the last event seen."
)
FINAL_VALUES = OpenApiResponse(
    OpenApiTypes.ANY,
    description="The thread's values after the run (`__interrupt__` lists pending interrupts), "
    "or `{__error__: {error, message}}` if it failed. Newlines may precede it while the run goes "
    "on.",
)
#: The query parameters and header of the endpoints that join streams.
STREAM_QUERY = [
    OpenApiParameter(
        "stream_mode",
        {"type": "array", "items": {"type": "string"}},
        description="stream modes to keep (repeated, or a JSON array); all when absent",
    ),
    OpenApiParameter(
        "Last-Event-ID",
        str,
        OpenApiParameter.HEADER,
        description="resume after this event id (`-1`: from the start)",
    ),
]

MODE_KEYS = ("stream_mode", "stream_modes")


def run_path(thread_id: str, run_id: Any) -> str:
    """A run's path relative to the API base."""
    return f"/threads/{thread_id}/runs/{run_id}"


#: `run_headers` as the OpenAPI schema documents them.
RUN_HEADERS = [
    OpenApiParameter(
        "Content-Location",
        str,
        OpenApiParameter.HEADER,
        response=[200],
        description="the run: {API prefix}/threads/{thread_id}/runs/{run_id}",
    ),
    OpenApiParameter(
        "Location",
        str,
        OpenApiParameter.HEADER,
        response=[200],
        description="where to rejoin, relative to the API prefix (not on background runs)",
    ),
]


def run_headers(run: Run, *, location_suffix: str | None = None) -> dict[str, str]:
    """Content-Location (the SDKs read the run id from its end) and the reconnect Location."""
    path = run_path(run.thread_id, run.pk)
    headers = {"Content-Location": settings.API_PREFIX + path}
    if location_suffix is not None:
        headers["Location"] = path + location_suffix
    return headers


async def _admit(
    request: HttpRequest, thread_id: str | None, *, waits: bool = False
) -> tuple[Run, Subscription]:
    """Authenticate, validate a create body and admit its run, in one thread hop; the
    subscription is open before admission (and closed if anything fails). `waits`: the request
    answers the run's final state, which a run ending in this process then leaves for it
    (`answers`; `final_answer_body` stops waiting).

    Without a thread id the run is stateless: on a new thread, deleted after it by default.
    """
    run_id = uuid.uuid4()
    # A wait needs the run's end alone (with its answer, from a worker in another process):
    # the run's other events wake nothing.
    group = bus.run_end_group(run_id) if waits else bus.run_stream_group(run_id)
    subscription = await Subscription.open(group)
    if waits:
        answers.expect(run_id)
    watch = AdmissionWatch()
    try:
        try:
            run = await call_sync(
                _admit_sync, request, thread_id, run_id, watch, on=_admission_executor()
            )
        except NeedsAnotherThread:  # (nothing written)
            run = await call_sync(_admit_sync, request, thread_id, run_id, watch, on=Executor.API)
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            watch.client_left()  # the admission may still commit on its thread
        if waits:
            answers.forget(run_id)
        await subscription.close()
        raise
    return run, subscription


def _admission_executor() -> Executor:
    """Where admission's hop runs. On SQLite (the embedded default: one writer at a time
    anyway), the engine's thread, where the run's claim, its checkpoints and its end run too: a
    run then wakes one database thread (bench/README.md, "Issue 13: PERF9W", "ONETHREAD"); an
    admission that must read checkpoints moves to the API pool (`NeedsAnotherThread`). On
    PostgreSQL the API pool, whose threads overlap their round trips."""
    return Executor.API if is_postgresql() else Executor.ENGINE


def _admit_sync(
    request: HttpRequest, thread_id: str | None, run_id: uuid.UUID, watch: AdmissionWatch
) -> Run:
    user = authenticate_in_view(request)
    if thread_id is None:
        run_request = parse_stateless_run_create(json_body(request))
    else:
        run_request = parse_run_create(json_body(request))
        thread_id = validate_thread_id(thread_id)
    return watch.admitted(
        admission.admit_run(user=user, thread_id=thread_id, request=run_request, run_id=run_id)
    )


@extend_schema(
    request=RunCreateSerializer,
    parameters=RUN_HEADERS,
    responses={**event_stream(RUN_STREAM_EVENTS), **ADMISSION_ERRORS},
)
@api_view(required_scopes={"POST": "runs:create"}, on=Executor.API, authenticates_in_view=True)
async def create_and_stream(request: HttpRequest, thread_id: str | None = None) -> HttpResponse:
    """POST /threads/{t}/runs/stream (and stateless /runs/stream): create a run, stream it."""
    run, subscription = await _admit(request, thread_id)
    stream = stream_run_events(
        subscription=subscription,
        run=run,
        cancel_on_disconnect=run.on_disconnect == Run.OnDisconnect.CANCEL,
        viewer=None if thread_id is None else viewer_of(request, run),
    )
    return sse_response(stream, headers=run_headers(run, location_suffix="/stream"))


@extend_schema(
    request=RunCreateSerializer,
    parameters=RUN_HEADERS,
    responses={200: FINAL_VALUES, **ADMISSION_ERRORS},
)
@api_view(required_scopes={"POST": "runs:create"}, on=Executor.API, authenticates_in_view=True)
async def create_and_wait(request: HttpRequest, thread_id: str | None = None) -> HttpResponse:
    """POST /threads/{t}/runs/wait (and stateless /runs/wait): create a run, answer its end."""
    run, subscription = await _admit(request, thread_id, waits=True)
    body = final_answer_body(
        subscription=subscription,
        run=run,
        cancel_on_disconnect=run.on_disconnect == Run.OnDisconnect.CANCEL,
        viewer=None if thread_id is None else viewer_of(request, run),
    )
    return await json_stream_response(body, headers=run_headers(run, location_suffix="/join"))


async def json_stream_response(
    body: AsyncIterator[bytes], *, headers: dict[str, str]
) -> BytesStreamingResponse:
    """A JSON answer streamed from `body` (bytes; newlines may precede the JSON while a run
    goes on), with `headers` (name to value) set."""
    response = BytesStreamingResponse(body, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def viewer_of(request: HttpRequest, run: Run) -> ViewRight:
    """The caller's right to view the run's thread, just read (the run was fetched for them),
    for the stream to read again as it goes on. A stateless run's temporary thread is its
    caller's alone, so its stream has none."""
    return ViewRight(user_id=request.user.pk, thread_id=run.thread_id, unless_deleted=True)


def stream_modes_of(request: HttpRequest, *, allowed: tuple[str, ...]) -> list[str]:
    """`stream_mode` / `stream_modes` of a query: repeated, or JSON arrays."""
    modes: list[str] = []
    for key in MODE_KEYS:
        for value in request.GET.getlist(key):
            if value.strip():  # httpx sends a None parameter as an empty value
                modes.extend(parse_stream_modes(value, allowed=allowed))
    return list(dict.fromkeys(modes))


def _readable_thread_at(*, user: Any, thread_id: str, cursor: ThreadCursor | None) -> Any:
    """The thread, and its cursor's run checked, before the response starts (errors are JSON
    answers then, never a stream that ends without a status line)."""
    thread = get_thread(user=user, thread_id=thread_id)
    check_cursor(thread_id=thread_id, cursor=cursor)
    return thread


@extend_schema(
    operation_id="threads_stream",
    parameters=STREAM_QUERY,
    responses=event_stream(THREAD_STREAM_EVENTS),
)
@api_view(required_scopes={"GET": "runs:read"}, on=Executor.API)
async def thread_stream(request: HttpRequest, thread_id: str) -> HttpResponse:
    """GET /threads/{t}/stream: the events of every run of the thread as they come."""
    thread_id = validate_thread_id(thread_id)
    modes = stream_modes_of(request, allowed=THREAD_STREAM_MODES + STREAM_MODES)
    cursor = ThreadCursor.parse(request.headers.get("Last-Event-ID"))
    _, subscription = await subscribe_then(
        bus.thread_stream_group(thread_id),
        _readable_thread_at,
        user=request.user,
        thread_id=thread_id,
        cursor=cursor,
    )
    await announce_to_thread_runs(subscription, thread_id)
    stream = stream_thread_events(
        subscription=subscription,
        thread_id=thread_id,
        user_id=request.user.pk,
        cursor=cursor,
        names=thread_event_filter(modes),
    )
    return sse_response(stream)
