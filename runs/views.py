"""Run endpoints answered at once with JSON: create (background), list, get, delete."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deerflow_site.api.ids import validate_thread_id
from deerflow_site.api.pagination import PAGINATION_HEADERS, page, pagination_headers
from deerflow_site.api.query import validated_query
from deerflow_site.errors import Invalid
from runs import admission, selectors, services
from runs.create_serializers import (
    ADMISSION_ERRORS,
    RunCreateSerializer,
    parse_run_create,
    parse_stateless_run_create,
)
from runs.serializers import RunListQuerySerializer, RunSerializer, run_json
from runs.stream_views import RUN_HEADERS, run_headers


class ThreadRunsView(APIView):
    required_scopes = {"POST": "runs:create", "GET": "runs:read"}

    @extend_schema(
        operation_id="runs_create",
        request=RunCreateSerializer,
        parameters=RUN_HEADERS,
        responses={200: RunSerializer, **ADMISSION_ERRORS},
    )
    def post(self, request: Request, thread_id: str) -> Response:
        """Create a background run."""
        run = admission.admit_run(
            user=request.user,
            thread_id=validate_thread_id(thread_id),
            request=parse_run_create(request.data),
        )
        return Response(run_json(run), headers=run_headers(run))

    @extend_schema(
        operation_id="runs_list",
        parameters=[RunListQuerySerializer, *PAGINATION_HEADERS],
        responses={200: RunSerializer(many=True)},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        """List a thread's runs, newest first."""
        query = validated_query(RunListQuerySerializer, request.query_params)
        runs = selectors.runs_of_thread(
            user=request.user, thread_id=thread_id, status=query.get("status")
        ).prefetch_related("model_usage")
        items, total = page(runs, limit=query["limit"], offset=query["offset"])
        data = [run_json(run, select=query.get("select")) for run in items]
        headers = pagination_headers(total=total, limit=query["limit"], offset=query["offset"])
        return Response(data, headers=headers)


class StatelessRunsView(APIView):
    required_scopes = {"POST": "runs:create"}

    @extend_schema(
        operation_id="runs_create_stateless",
        request=RunCreateSerializer,
        parameters=RUN_HEADERS,
        responses={200: RunSerializer, **ADMISSION_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """Create a background run on a new thread (deleted after it unless on_completion=keep)."""
        run = admission.admit_run(
            user=request.user, thread_id=None, request=parse_stateless_run_create(request.data)
        )
        return Response(run_json(run), headers=run_headers(run))


class RunBatchView(APIView):
    required_scopes = {"POST": "runs:create"}

    @extend_schema(
        operation_id="runs_create_batch",
        request=RunCreateSerializer(many=True),
        responses={200: RunSerializer(many=True), **ADMISSION_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """Create several stateless background runs; nothing is created if one body is invalid."""
        if not isinstance(request.data, list):
            raise Invalid({"non_field_errors": ["Expected a list of run bodies."]})
        requests = []
        for index, data in enumerate(request.data):
            try:
                requests.append(parse_stateless_run_create(data))
            except ValidationError as exc:
                raise Invalid({index: exc.detail}) from None
        runs = admission.admit_stateless_runs(user=request.user, requests=requests)
        return Response([run_json(run) for run in runs])


class RunDetailView(APIView):
    required_scopes = {"GET": "runs:read", "DELETE": "runs:cancel"}

    @extend_schema(operation_id="runs_get", responses={200: RunSerializer})
    def get(self, request: Request, thread_id: str, run_id: str) -> Response:
        """Get a run of a thread."""
        run = selectors.get_run(user=request.user, thread_id=thread_id, run_id=run_id)
        return Response(run_json(run))

    @extend_schema(
        operation_id="runs_delete",
        responses={204: None, 409: OpenApiResponse(description="The run is still active")},
    )
    def delete(self, request: Request, thread_id: str, run_id: str) -> Response:
        """Delete a finished run."""
        run = selectors.get_run(
            user=request.user, thread_id=thread_id, run_id=run_id, action="change"
        )
        services.delete_run(run=run)
        return Response(status=status.HTTP_204_NO_CONTENT)
