"""Thread endpoints: translate HTTP to thread services and selectors, nothing else."""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import status
from rest_framework.fields import IntegerField
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deerflow_site.api.ids import validate_thread_id
from deerflow_site.api.pagination import PAGINATION_HEADERS, page, pagination_headers
from deerflow_site.api.responses import json_response
from deerflow_site.api.schema import error
from deerflow_site.api.serializers import request_data, validated
from threads import selectors, services
from threads.models import Thread
from threads.serializers import (
    ThreadCountSerializer,
    ThreadCreateSerializer,
    ThreadPatchSerializer,
    ThreadPruneSerializer,
    ThreadSearchSerializer,
    ThreadSerializer,
    thread_data,
)


def _matching_threads(request: Request, body: dict) -> QuerySet[Thread]:
    """The caller's visible threads matching a search or count body's filters."""
    return selectors.search_threads(
        user=request.user,
        metadata=body.get("metadata"),
        values=body.get("values"),
        ids=body.get("ids"),
        status=body.get("status"),
    )


class ThreadListView(APIView):
    required_scopes = {"POST": "threads:write"}

    @extend_schema(
        operation_id="threads_create",
        request=ThreadCreateSerializer,
        responses={200: ThreadSerializer, 409: error("The thread id is taken.")},
    )
    def post(self, request: Request) -> Response:
        """Create a thread."""
        body = request_data(ThreadCreateSerializer, request.data)
        thread, _ = services.create_thread(
            user=request.user,
            thread_id=body.get("thread_id"),
            metadata=body.get("metadata"),
            if_exists=body["if_exists"],
            ttl_minutes=body.get("ttl"),
        )
        return json_response(thread_data(thread))


class ThreadSearchView(APIView):
    required_scopes = {"POST": "threads:read"}

    @extend_schema(
        operation_id="threads_search",
        request=ThreadSearchSerializer,
        parameters=PAGINATION_HEADERS,
        responses={200: ThreadSerializer(many=True)},
    )
    def post(self, request: Request) -> Response:
        """Search the threads the caller may view."""
        body = validated(ThreadSearchSerializer, request.data)
        threads = _matching_threads(request, body).order_by(
            *selectors.thread_order(sort_by=body["sort_by"], sort_order=body["sort_order"])
        )
        items, total = page(threads, limit=body["limit"], offset=body["offset"])
        data = [thread_data(item) for item in items]
        if body.get("select"):
            data = [{key: item[key] for key in body["select"]} for item in data]
        headers = pagination_headers(total=total, limit=body["limit"], offset=body["offset"])
        return json_response(data, headers=headers)


class ThreadCountView(APIView):
    required_scopes = {"POST": "threads:read"}

    @extend_schema(
        operation_id="threads_count", request=ThreadCountSerializer, responses={200: int}
    )
    def post(self, request: Request) -> Response:
        """Count the threads the caller may view that match the filters."""
        body = validated(ThreadCountSerializer, request.data)
        return Response(_matching_threads(request, body).count())


class ThreadPruneView(APIView):
    required_scopes = {"POST": "threads:delete"}

    @extend_schema(
        operation_id="threads_prune",
        request=ThreadPruneSerializer,
        responses={200: inline_serializer("ThreadPrune", {"pruned_count": IntegerField()})},
    )
    def post(self, request: Request) -> Response:
        """Delete the named threads the caller may delete, with their runs and checkpoints;
        those missing, not theirs or busy are left. Answers how many went."""
        body = validated(ThreadPruneSerializer, request.data)
        pruned = services.prune_threads(user=request.user, thread_ids=body["thread_ids"])
        return json_response({"pruned_count": pruned})


class ThreadDetailView(APIView):
    required_scopes = {"GET": "threads:read", "PATCH": "threads:write", "DELETE": "threads:delete"}

    @extend_schema(operation_id="threads_get", responses={200: ThreadSerializer})
    def get(self, request: Request, thread_id: str) -> Response:
        """Get a thread."""
        thread = selectors.get_thread(user=request.user, thread_id=validate_thread_id(thread_id))
        return json_response(thread_data(thread))

    @extend_schema(
        operation_id="threads_update",
        request=ThreadPatchSerializer,
        responses={200: ThreadSerializer},
    )
    def patch(self, request: Request, thread_id: str) -> Response:
        """Merge metadata into a thread."""
        thread_id = validate_thread_id(thread_id)
        body = validated(ThreadPatchSerializer, request.data)
        thread = selectors.get_thread(user=request.user, thread_id=thread_id, action="change")
        thread = services.update_thread(
            thread=thread, metadata=body.get("metadata"), ttl_minutes=body.get("ttl")
        )
        return json_response(thread_data(thread))

    @extend_schema(
        operation_id="threads_delete",
        responses={204: None, 409: error("A run of the thread is pending or running.")},
    )
    def delete(self, request: Request, thread_id: str) -> Response:
        """Delete a thread with its runs and checkpoints."""
        thread = selectors.get_thread(
            user=request.user, thread_id=validate_thread_id(thread_id), action="delete"
        )
        services.delete_thread(thread=thread)
        return Response(status=status.HTTP_204_NO_CONTENT)
