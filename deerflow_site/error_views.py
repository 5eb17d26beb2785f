"""Django's error views (400, 403, 404, 500), answering JSON under the API prefix.

Errors that never reach a view (a CSRF failure, too many query parameters, an exception a view
did not map) come here; API clients parse every answer as JSON, so under the API prefix they get
`{"detail": ...}`, and the admin and front page keep Django's pages.
"""

import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure


def is_api_request(request: HttpRequest) -> bool:
    return request.path == settings.API_PREFIX or request.path.startswith(settings.API_PREFIX + "/")


def bad_request(request: HttpRequest, exception: Exception, **kwargs: Any) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse({"detail": _bad_request_detail(exception)}, status=400)
    return defaults.bad_request(request, exception, **kwargs)


def _bad_request_detail(exception: Exception) -> str:
    if isinstance(exception, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return f"Too many query parameters or form fields: at most {limit}."
    return "Bad request."


def permission_denied(request: HttpRequest, exception: Exception, **kwargs: Any) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse({"detail": "Permission denied."}, status=403)
    return defaults.permission_denied(request, exception, **kwargs)


#: The first path segments of the LangGraph Platform API, which other servers (`langgraph dev`)
#: serve at their root and this one under the API prefix.
PLATFORM_API_ROOTS = frozenset({"assistants", "crons", "info", "ok", "runs", "store", "threads"})


def page_not_found(request: HttpRequest, exception: Exception, **kwargs: Any) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    if request.path.strip("/").split("/", 1)[0] in PLATFORM_API_ROOTS:
        # A client pointed at the server's root, as the SDKs' docs point it at `langgraph dev`'s.
        api = request.build_absolute_uri(settings.API_PREFIX)
        detail = f'Not found: the API is served under {api} (get_client(url="{api}")).'
        return JsonResponse({"detail": detail}, status=404)
    return defaults.page_not_found(request, exception, **kwargs)


def server_error(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    if is_api_request(request):
        # Called while Django handles the exception (outside a view's mapping: a middleware's
        # database read): one the map knows, e.g. an unreachable database's 503, keeps its answer.
        from deerflow_site.api.errors import error_headers, error_status

        mapped = error_status(sys.exc_info()[1]) if sys.exc_info()[1] is not None else None
        if mapped is not None and mapped[0] >= 500:
            status, detail = mapped
            return JsonResponse({"detail": detail}, status=status, headers=error_headers(status))
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request, **kwargs)


def csrf_failure(request: HttpRequest, reason: str = "", **kwargs: Any) -> HttpResponse:
    """CSRF_FAILURE_VIEW: a session's unsafe request without a valid CSRF token."""
    if is_api_request(request):
        return JsonResponse({"detail": f"CSRF Failed: {reason}"}, status=403)
    return django_csrf_failure(request, reason, **kwargs)
