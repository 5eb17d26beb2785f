"""The journal's endpoints (deer-flow gateway extensions): chat history pages, a run's events,
a thread's token usage. Raw HTTP only: the official SDKs have no methods for them."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deerflow_site.api.query import validated_query
from deerflow_site.api.responses import json_response
from runs.journal import selectors
from runs.journal.rendering import events_json
from runs.journal.serializers import (
    EventsQuerySerializer,
    MessagesQuerySerializer,
    RunEventSerializer,
    RunMessagesPageSerializer,
    ThreadMessageSerializer,
    TokenUsageQuerySerializer,
    TokenUsageSerializer,
)

NOT_VISIBLE = OpenApiResponse(description="Thread (or run) not found, or not yours")
BAD_QUERY = OpenApiResponse(description="A query parameter is invalid (named in detail)")


class ThreadMessagesView(APIView):
    required_scopes = {"GET": "runs:read"}

    @extend_schema(
        operation_id="threads_messages",
        parameters=[MessagesQuerySerializer],
        responses={200: ThreadMessageSerializer(many=True), 404: NOT_VISIBLE, 422: BAD_QUERY},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        """The thread's chat history: messages of every run, ascending, windowed by seq."""
        query = validated_query(MessagesQuerySerializer, request.query_params)
        window = MessagesQuerySerializer.window(query)
        events = selectors.thread_messages(user=request.user, thread_id=thread_id, window=window)
        return json_response(body=events_json(events))


class RunMessagesView(APIView):
    required_scopes = {"GET": "runs:read"}

    @extend_schema(
        operation_id="runs_messages",
        parameters=[MessagesQuerySerializer],
        responses={200: RunMessagesPageSerializer, 404: NOT_VISIBLE, 422: BAD_QUERY},
    )
    def get(self, request: Request, thread_id: str, run_id: str) -> Response:
        """One run's messages, ascending, windowed by seq; `has_more` when more lie beyond."""
        query = validated_query(MessagesQuerySerializer, request.query_params)
        data, has_more = selectors.run_messages(
            user=request.user,
            thread_id=thread_id,
            run_id=run_id,
            window=MessagesQuerySerializer.window(query),
        )
        more = b"true" if has_more else b"false"
        return json_response(body=b'{"data":' + events_json(data) + b',"has_more":' + more + b"}")


class RunEventsView(APIView):
    required_scopes = {"GET": "runs:read"}

    @extend_schema(
        operation_id="runs_events",
        parameters=[EventsQuerySerializer],
        responses={200: RunEventSerializer(many=True), 404: NOT_VISIBLE, 422: BAD_QUERY},
    )
    def get(self, request: Request, thread_id: str, run_id: str) -> Response:
        """The run's journal (every category), ascending; `after_seq` pages forward."""
        query = validated_query(EventsQuerySerializer, request.query_params)
        events = selectors.run_events(
            user=request.user,
            thread_id=thread_id,
            run_id=run_id,
            event_types=query.get("event_types") or [],
            window=selectors.Window(limit=query["limit"], after_seq=query.get("after_seq")),
        )
        return json_response(body=events_json(events))


class ThreadTokenUsageView(APIView):
    required_scopes = {"GET": "runs:read"}

    @extend_schema(
        operation_id="threads_token_usage",
        parameters=[TokenUsageQuerySerializer],
        responses={200: TokenUsageSerializer, 404: NOT_VISIBLE, 422: BAD_QUERY},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        """Token totals of the thread's runs, by model too (running runs with include_active)."""
        query = validated_query(TokenUsageQuerySerializer, request.query_params)
        usage = selectors.thread_token_usage(
            user=request.user, thread_id=thread_id, include_active=query["include_active"]
        )
        return Response(usage)
