"""Feedback endpoints (deer-flow gateway extension): the caller's rating of a run."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deerflow_site.api.serializers import validated
from feedback import selectors, services
from feedback.serializers import (
    FeedbackRequestSerializer,
    FeedbackSerializer,
    FeedbackStatsSerializer,
)
from runs.models import Run
from runs.selectors import get_run

NOT_VISIBLE = OpenApiResponse(description="Thread or run not found, or not yours")
NO_FEEDBACK = OpenApiResponse(description="Thread or run not found, or no feedback of yours")


def _run(request: Request, thread_id: str, run_id: str) -> Run:
    """The run, if the caller may view its thread (feedback needs no more than that)."""
    return get_run(user=request.user, thread_id=thread_id, run_id=run_id)


def _body(request: Request) -> dict[str, object]:
    body = validated(FeedbackRequestSerializer, request.data)
    return {
        "rating": body["rating"],
        "comment": body.get("comment") or "",
        "message_id": body.get("message_id") or "",
    }


#: Feedback on a run needs no more than reading the run (the deer-flow gateway's rule).
READ_RUNS = "runs:read"


class RunFeedbackView(APIView):
    required_scopes = {m: READ_RUNS for m in ("GET", "PUT", "POST", "DELETE")}

    @extend_schema(
        operation_id="feedback_put",
        request=FeedbackRequestSerializer,
        responses={200: FeedbackSerializer, 404: NOT_VISIBLE, 422: OpenApiResponse()},
    )
    def put(self, request: Request, thread_id: str, run_id: str) -> Response:
        """Create or replace the caller's feedback on the run."""
        run = _run(request, thread_id, run_id)
        feedback = services.put_feedback(user=request.user, run=run, **_body(request))
        return Response(FeedbackSerializer(feedback).data)

    @extend_schema(
        operation_id="feedback_create",
        request=FeedbackRequestSerializer,
        responses={
            200: FeedbackSerializer,
            404: NOT_VISIBLE,
            409: OpenApiResponse(description="You already gave feedback on this run"),
            422: OpenApiResponse(),
        },
    )
    def post(self, request: Request, thread_id: str, run_id: str) -> Response:
        """Give feedback on the run (409 if the caller already has)."""
        run = _run(request, thread_id, run_id)
        feedback = services.create_feedback(user=request.user, run=run, **_body(request))
        return Response(FeedbackSerializer(feedback).data)

    @extend_schema(
        operation_id="feedback_get", responses={200: FeedbackSerializer, 404: NO_FEEDBACK}
    )
    def get(self, request: Request, thread_id: str, run_id: str) -> Response:
        """The caller's feedback on the run."""
        run = _run(request, thread_id, run_id)
        return Response(FeedbackSerializer(selectors.feedback_of(user=request.user, run=run)).data)

    @extend_schema(operation_id="feedback_delete", responses={204: None, 404: NO_FEEDBACK})
    def delete(self, request: Request, thread_id: str, run_id: str) -> Response:
        """Delete the caller's feedback on the run."""
        run = _run(request, thread_id, run_id)
        services.delete_feedback(user=request.user, run=run)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunFeedbackStatsView(APIView):
    required_scopes = {"GET": READ_RUNS}

    @extend_schema(
        operation_id="feedback_stats", responses={200: FeedbackStatsSerializer, 404: NOT_VISIBLE}
    )
    def get(self, request: Request, thread_id: str, run_id: str) -> Response:
        """How many users rated the run, up and down."""
        run = _run(request, thread_id, run_id)
        return Response(selectors.feedback_stats(run=run))


class ThreadFeedbackView(APIView):
    required_scopes = {"GET": READ_RUNS}

    @extend_schema(
        operation_id="feedback_list_thread",
        responses={200: FeedbackSerializer(many=True), 404: NOT_VISIBLE},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        """The caller's feedback on every run of the thread."""
        feedback = selectors.thread_feedback(user=request.user, thread_id=thread_id)
        return Response(FeedbackSerializer(feedback, many=True).data)
