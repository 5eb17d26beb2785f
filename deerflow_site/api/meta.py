"""Health and server information endpoints."""

from importlib.metadata import PackageNotFoundError, version

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


class ApiDocsView(SpectacularSwaggerView):
    """The interactive docs page (Swagger UI). OPTIONS answers its methods, as Django's views
    do: DRF's description of a view is rendered by the view's renderer, here an HTML template
    that has none for it (a 500)."""

    def options(self, request: Request, *args: object, **kwargs: object) -> HttpResponse:
        return HttpResponse(headers={"Allow": ", ".join(self.allowed_methods)})


class ApiRootView(APIView):
    """The API's root: where its docs and schema are."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        operation_id="api_root",
        responses={
            200: inline_serializer(
                "ApiRoot",
                {
                    "name": serializers.CharField(),
                    "docs": serializers.CharField(help_text="path of the interactive docs"),
                    "openapi": serializers.CharField(help_text="path of the OpenAPI schema"),
                    "info": serializers.CharField(help_text="path of the server information"),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        prefix = settings.API_PREFIX
        return Response(
            {
                "name": settings.PROJECT_NAME,
                "docs": f"{prefix}/docs",
                "openapi": f"{prefix}/openapi.json",
                "info": f"{prefix}/info",
            }
        )


class InfoView(APIView):
    """Feature flags for anyone; versions and the deployment's layout for signed-in users only
    (an anonymous caller learns nothing that would help aim an attack)."""

    permission_classes = (AllowAny,)

    @extend_schema(operation_id="info", responses={200: dict})
    def get(self, request: Request) -> Response:
        user = request.user
        if user is not None and user.is_authenticated:
            return Response(server_info())
        return Response(public_server_info())


def public_server_info() -> dict:
    """`{"flags": {...}}`: what the SDKs and LangGraph Studio read."""
    return {
        "flags": {
            "assistants": True,
            "crons": False,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
            "strict_resume": True,
        }
    }


class CanViewRuns(BasePermission):
    """Staff who hold the admin's `runs.view_run` permission. The 403 says so and where else to
    look: the local mode's user is no staff, and a newcomer following the README meets it there."""

    message = (
        "Only staff holding the runs.view_run permission may read the operations status; "
        "the admin's index page (/admin/) shows it too."
    )

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_staff and user.has_perm("runs.view_run"))


class OperationsStatusView(APIView):
    """Staff only: the run queue and the workers, as runs.operations.operations_status gives
    them (also on the admin's index page)."""

    permission_classes = (IsAuthenticated, CanViewRuns)

    @extend_schema(operation_id="operations_status", responses={200: dict})
    def get(self, request: Request) -> Response:
        from runs.operations import operations_status

        return Response(operations_status())


def server_info() -> dict:
    """The public info plus versions, database engine, channel layer and the agent model."""
    from runs.engine import describe_agent_model

    return {
        "version": "0.1.0",
        "langgraph_py_version": _version("langgraph"),
        "django_version": _version("django"),
        **public_server_info(),
        "auth_mode": settings.AUTH_MODE,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "channel_layer": "redis" if settings.REDIS_URL else "in-memory",
        "embedded_worker": settings.EMBEDDED_WORKER,
        "agent_model": describe_agent_model(),
    }


@csrf_exempt  # it changes nothing, and a 404 tells more than a CSRF failure
def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Unknown API paths answer JSON like every other API error, whatever the method."""
    return JsonResponse({"detail": "Not found."}, status=404)
