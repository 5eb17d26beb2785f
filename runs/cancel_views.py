"""Cancel endpoints: one run (`POST …/runs/{r}/cancel`, and `…/stream?action=`), and many
(`POST /runs/cancel`). The rules are in `runs.cancellation`."""

from functools import partial

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deerflow_site.api.async_views import api_view
from deerflow_site.api.ids import validate_thread_id, validate_uuid
from deerflow_site.api.query import validated_query
from deerflow_site.api.schema import error
from deerflow_site.api.serializers import validated
from deerflow_site.bridge import Executor, call_sync
from runs.cancellation import cancel_run_of_user, cancel_runs
from runs.engine import Subscription, bus
from runs.serializers import BulkCancelSerializer, CancelQuerySerializer
from runs.sse.waiting import heartbeats_until_run_ends

#: How long `?wait=1` waits for a cancelled run to stop before answering 202 anyway.
CANCEL_WAIT_SECONDS = 30.0


@extend_schema(
    operation_id="runs_cancel",
    parameters=[CancelQuerySerializer],
    request=None,
    responses={
        202: OpenApiResponse(description="The run was asked to stop."),
        204: OpenApiResponse(description="With `wait`: the run has stopped."),
        409: error("The run had already ended."),
    },
)
@api_view(required_scopes={"POST": "runs:cancel"}, on=Executor.API)
async def cancel(request: HttpRequest, thread_id: str, run_id: str) -> HttpResponse:
    """POST /threads/{t}/runs/{r}/cancel?wait=0|1&action=interrupt|rollback."""
    query = validated_query(CancelQuerySerializer, request.GET)
    return await cancel_run_of_request(
        request, thread_id, run_id, action=query["action"], wait=query["wait"]
    )


async def cancel_run_of_request(
    request: HttpRequest, thread_id: str, run_id: str, *, action: str, wait: bool
) -> HttpResponse:
    """202 once asked to stop; with `wait`, 204 once it has stopped (202 if it has not within
    CANCEL_WAIT_SECONDS). 404 when the run is not the user's to change (or is gone), 409 if it
    had finished.

    The cancel is the database's (the run's status, or its cancel flag, which the worker reads);
    the channel layer only carries it sooner. So a cancel does without the layer: without `wait`
    it never listens; with `wait` it listens for the run's end when the layer answers, and reads
    the run's row every RUN_POLL_SECONDS either way.
    """
    thread_id = validate_thread_id(thread_id)
    run_uuid = validate_uuid(run_id, field="run_id")
    cancel = partial(
        call_sync,
        cancel_run_of_user,
        user=request.user,
        thread_id=thread_id,
        run_id=run_uuid,
        action=action,
        on=Executor.API,
    )
    if not wait:
        await cancel()
        return HttpResponse(status=202)
    # Listening before the cancel: an end published after it is not missed.
    subscription = await Subscription.open_if_reachable(bus.run_end_group(run_uuid))
    try:
        run = await cancel()
        stopped = False
        async for _ in heartbeats_until_run_ends(
            subscription=subscription,
            run=run,
            interval=CANCEL_WAIT_SECONDS,
            check_every=settings.RUN_POLL_SECONDS,
        ):
            break
        else:
            stopped = True
        return HttpResponse(status=204 if stopped else 202)
    finally:
        if subscription is not None:
            await subscription.close()


class BulkCancelView(APIView):
    required_scopes = {"POST": "runs:cancel"}

    @extend_schema(
        operation_id="runs_cancel_many",
        request=BulkCancelSerializer,
        parameters=[CancelQuerySerializer],
        responses={204: None},
    )
    def post(self, request: Request) -> Response:
        """Cancel the runs of a thread, or every run of the caller's with a status."""
        query = validated_query(CancelQuerySerializer, request.query_params)
        body = validated(BulkCancelSerializer, request.data)
        cancel_runs(
            user=request.user,
            action=query["action"],
            thread_id=body.get("thread_id"),
            run_ids=body.get("run_ids"),
            status=body.get("status"),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
