"""Domain errors and their one mapping to HTTP.

Services raise these; `exception_handler` (DRF) and `error_response` (async views) turn them into
`{"detail": ...}` JSON with the status the contract names.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A failure a client can cause, carrying its HTTP status."""

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: Any = None) -> None:
        self.detail = detail if detail is not None else self.default_detail()
        super().__init__(self.detail)

    def default_detail(self) -> str:
        return self.__class__.__doc__ or "Bad request."


class BadRequest(ServiceError):
    """The request cannot be carried out."""

    status_code = status.HTTP_400_BAD_REQUEST


class Forbidden(ServiceError):
    """You do not have permission to perform this action."""

    status_code = status.HTTP_403_FORBIDDEN


class NotFound(ServiceError):
    """Not found."""

    status_code = status.HTTP_404_NOT_FOUND


class Conflict(ServiceError):
    """The request conflicts with the current state."""

    status_code = status.HTTP_409_CONFLICT


class Invalid(ServiceError):
    """The request is invalid."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


TOO_LARGE = {"detail": "The request body is too large."}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, speaking the contract's status codes and bodies."""
    if isinstance(exc, RequestDataTooBig):
        return Response(TOO_LARGE, status=413)
    if isinstance(exc, ServiceError):
        return Response({"detail": exc.detail}, status=exc.status_code)
    if isinstance(exc, drf_exceptions.ParseError):
        return Response({"detail": f"Malformed JSON: {exc.detail}"}, status=422)
    if isinstance(exc, drf_exceptions.ValidationError):
        return Response({"detail": exc.detail}, status=422)
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return Response({"detail": exc.detail}, status=415)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": response.data}
    return response


def error_response(exc: Exception) -> JsonResponse:
    """The JSON response for an error raised in an async (non-DRF) view."""
    if isinstance(exc, RequestDataTooBig):
        return JsonResponse(TOO_LARGE, status=413)
    if isinstance(exc, ServiceError):
        return JsonResponse({"detail": exc.detail}, status=exc.status_code)
    if isinstance(exc, drf_exceptions.APIException):
        code = 422 if isinstance(exc, drf_exceptions.ValidationError) else exc.status_code
        return JsonResponse({"detail": exc.detail}, status=code)
    if isinstance(exc, Http404):
        return JsonResponse({"detail": "Not found."}, status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return JsonResponse({"detail": "Permission denied."}, status=403)
    raise exc
