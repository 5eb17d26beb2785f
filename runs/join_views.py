"""The joins of a run that exists: `GET /threads/{t}/runs/{r}/join` (its final state, or its
events when asked for SSE) and `GET|POST /threads/{t}/runs/{r}/stream` (its events; a POST with
`?action=` cancels it).

Each subscribes to the run's events before reading the run (nothing is missed between), answers
errors found before streaming as JSON, then streams or waits.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from deerflow_site.api.async_views import api_view
from deerflow_site.api.authentication import is_same_origin
from deerflow_site.api.backends import has_model_permission
from deerflow_site.api.errors import Invalid
from deerflow_site.api.permissions import SCOPES
from deerflow_site.api.query import validated_query
from deerflow_site.api.schema import error, event_stream
from deerflow_site.bridge import Executor, call_sync
from deerflow_site.errors import Forbidden
from runs.cancel_views import cancel_run_of_request
from runs.create_serializers import STREAM_MODES
from runs.engine import answers
from runs.serializers import JoinQuerySerializer, JoinStreamQuerySerializer
from runs.sse.frames import parse_event_id, sse_response
from runs.sse.run_stream import stream_run_events, subscribe_to_run
from runs.sse.waiting import final_answer_body
from runs.stream_views import (
    FINAL_VALUES,
    MODE_KEYS,
    RUN_STREAM_EVENTS,
    STREAM_QUERY,
    json_stream_response,
    run_headers,
    stream_modes_of,
    viewer_of,
)


@extend_schema(
    operation_id="runs_join",
    parameters=[JoinQuerySerializer],
    responses={(200, "application/json"): FINAL_VALUES, **event_stream(RUN_STREAM_EVENTS)},
)
@api_view(required_scopes={"GET": "runs:read"}, on=Executor.API)
async def join(request: HttpRequest, thread_id: str, run_id: str) -> HttpResponse:
    """GET /threads/{t}/runs/{r}/join: the final state once the run ends (SSE when asked);
    `?cancel_on_disconnect=1` interrupts the run should the caller leave before its end, as
    a join stream's does (`_cancels_on_disconnect`)."""
    query = validated_query(JoinQuerySerializer, request.GET, skip=MODE_KEYS)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _join_stream(request, thread_id, run_id, query=query)
    cancels = await _cancels_on_disconnect(request, query)
    run, subscription = await subscribe_to_run(
        user=request.user,
        thread_id=thread_id,
        run_id=run_id,
        end_only=True,
        action="change" if cancels else "view",
    )
    answers.expect(run.pk)
    body = final_answer_body(
        subscription=subscription,
        run=run,
        cancel_on_disconnect=cancels,
        viewer=viewer_of(request, run),
    )
    return await json_stream_response(body, headers=run_headers(run, location_suffix="/join"))


@extend_schema(
    methods=["GET"],
    operation_id="runs_join_stream_get",
    parameters=[
        OpenApiParameter(
            "cancel_on_disconnect",
            bool,
            description="cancel the run if this connection drops (same-origin sessions only)",
        ),
        *STREAM_QUERY,
    ],
    responses=event_stream(RUN_STREAM_EVENTS),
)
@extend_schema(
    methods=["POST"],
    operation_id="runs_join_stream_post",
    parameters=[JoinStreamQuerySerializer, *STREAM_QUERY],
    request=None,
    responses={
        **event_stream(RUN_STREAM_EVENTS),
        202: OpenApiResponse(description="With `action`: the run was asked to stop."),
        204: OpenApiResponse(description="With `action` and `wait`: the run has stopped."),
        409: error("With `action`: the run had already ended."),
    },
)
@api_view(required_scopes={"GET": "runs:read", "POST": "runs:read"}, on=Executor.API)
async def join_stream(request: HttpRequest, thread_id: str, run_id: str) -> HttpResponse:
    """GET|POST /threads/{t}/runs/{r}/stream: join the run's events (`?action=` cancels)."""
    query = validated_query(JoinStreamQuerySerializer, request.GET, skip=MODE_KEYS)
    if query.get("action") and request.method != "POST":
        raise Invalid({"action": ["Honoured on POST only: a GET never changes a run."]})
    if query.get("action"):
        await call_sync(_check_cancel_scope, request.user, on=Executor.API)
        return await cancel_run_of_request(
            request, thread_id, run_id, action=query["action"], wait=query["wait"]
        )
    return await _join_stream(request, thread_id, run_id, query=query)


async def _cancels_on_disconnect(request: HttpRequest, query: dict[str, Any]) -> bool:
    """Whether a join asked to cancel its run on disconnect may (`_may_change_runs`); Forbidden
    (403) without what a cancel needs: the scope here, the right to change the thread in
    `subscribe_to_run(action="change")`."""
    cancels = bool(query.get("cancel_on_disconnect")) and _may_change_runs(request)
    if cancels:
        await call_sync(_check_cancel_scope, request.user, on=Executor.API)
    return cancels


def _check_cancel_scope(user: Any) -> None:
    """A join that cancels (`?action=`, `cancel_on_disconnect`) needs the scope the cancel
    endpoint needs: Forbidden (403) without `runs:cancel`."""
    if not has_model_permission(user, SCOPES["runs:cancel"]):
        raise Forbidden("You lack the runs:cancel permission.")


async def _join_stream(
    request: HttpRequest, thread_id: str, run_id: str, *, query: dict[str, Any]
) -> HttpResponse:
    modes = stream_modes_of(request, allowed=STREAM_MODES)
    last_event_id = _last_event_id(request)
    cancels = await _cancels_on_disconnect(request, query)
    run, subscription = await subscribe_to_run(
        user=request.user,
        thread_id=thread_id,
        run_id=run_id,
        action="change" if cancels else "view",
    )
    stream = stream_run_events(
        subscription=subscription,
        run=run,
        last_event_id=last_event_id,
        modes=modes,
        cancel_on_disconnect=cancels,
        viewer=viewer_of(request, run),
    )
    return sse_response(stream, headers=run_headers(run, location_suffix="/stream"))


def _may_change_runs(request: HttpRequest) -> bool:
    """Whether a join may change the run (cancel it on disconnect): always with a token; with
    a session cookie or the local mode only when the request is the site's own, so that a link
    on another site cannot cancel a run through the user's browser."""
    return not getattr(request, "ambient_credentials", False) or is_same_origin(request)


def _last_event_id(request: HttpRequest) -> int | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw.strip() == "":
        return None
    return parse_event_id(raw)
