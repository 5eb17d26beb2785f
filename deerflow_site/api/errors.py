"""The one mapping of errors to HTTP responses: domain errors (`deerflow_site.errors`), DRF's
and Django's, to `{"detail": ...}` JSON with the status the contract names.

`error_status` is the map; `exception_handler` (DRF views) and `error_response` (async views,
including stream views before their stream starts) answer with it.
"""

import logging
import sqlite3
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from deerflow_site.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    QuotaExceeded,
)

logger = logging.getLogger(__name__)

#: The status of each kind of domain error.
STATUS_OF_KIND: dict[type[DomainError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    QuotaExceeded: 429,
}
TOO_LARGE = "The request body is too large."
DATABASE_UNAVAILABLE = "The database is unavailable at the moment; try again shortly."
CHANNEL_LAYER_UNAVAILABLE = "The channel layer is unavailable at the moment; try again shortly."
#: Seconds a client is told to wait after a 503 of an unavailable database or channel layer
#: (`Retry-After`).
DATABASE_RETRY_AFTER = 5
#: SQLite's primary result codes of a database that cannot be used at the moment: busy or
#: locked (beyond the busy timeout), its file unreadable or not to be opened.
SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
}
#: PostgreSQL's SQLSTATEs of a server that cannot be used at the moment: any connection
#: exception (class 08), a server shutting down or starting (57P01-57P03), no connection slot.
POSTGRES_UNAVAILABLE_CLASSES = ("08",)
POSTGRES_UNAVAILABLE = {"57P01", "57P02", "57P03", "53300"}


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is Django's OperationalError or InterfaceError of a database that cannot be
    reached or used at the moment (a 503: its connection refused or lost, SQLite's file locked
    beyond the busy timeout), not one of a statement that can never succeed (SQLite's "no such
    table", a statement timeout, a deadlock: a 500, our fault).

    The driver's own error is Django's error's `__cause__`: a `sqlite3.Error` with its result
    code, or a psycopg error with its SQLSTATE (None for the client's own connection failures:
    refused, lost, closed).
    """
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in SQLITE_UNAVAILABLE
    if type(cause).__module__.split(".", 1)[0] == "psycopg":
        sqlstate = getattr(cause, "sqlstate", None)
        return (
            sqlstate is None
            or sqlstate.startswith(POSTGRES_UNAVAILABLE_CLASSES)
            or sqlstate in POSTGRES_UNAVAILABLE
        )
    return False


#: What a 415 tells the client to do.
SEND_JSON = "Send the body as JSON, with the header Content-Type: application/json."


def error_status(exc: BaseException) -> tuple[int, Any] | None:
    """(HTTP status, `detail`) for an error a client caused, or a database the server cannot
    reach at the moment; None for anything else (a 500).

    Domain errors by their kind; a body over the upload limit 413; DRF's malformed JSON and
    validation errors 422, a body of another media type 415 saying what to send, its other API
    errors their own status; Django's Http404 and PermissionDenied 404 and 403; a database that
    cannot be reached or used at the moment (`database_unavailable`: its connection lost or refused,
    SQLite's file locked or unreadable) 503, and so are Redis's connection errors and timeouts (the
    channel layer down, or restarting). Any other database error is None: a 500, logged with its
    traceback.
    """
    if isinstance(exc, DomainError):
        kind = next(k for k in type(exc).__mro__ if k in STATUS_OF_KIND or k is DomainError)
        return STATUS_OF_KIND.get(kind, 400), exc.detail
    if isinstance(exc, RequestDataTooBig):
        return 413, TOO_LARGE
    if isinstance(exc, drf_exceptions.ParseError):
        return 422, f"Malformed JSON: {exc.detail}"
    if isinstance(exc, drf_exceptions.ValidationError):
        return 422, exc.detail
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):  # e.g. curl -d without -H
        return 415, f"{exc.detail} {SEND_JSON}"
    if isinstance(exc, drf_exceptions.APIException):
        return exc.status_code, exc.detail
    if isinstance(exc, Http404):
        return 404, "Not found."
    if isinstance(exc, DjangoPermissionDenied):
        return 403, "Permission denied."
    if database_unavailable(exc):
        logger.warning("database unavailable: %s", exc)
        return 503, DATABASE_UNAVAILABLE
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        logger.warning("channel layer unavailable: %s", exc)
        return 503, CHANNEL_LAYER_UNAVAILABLE
    return None


def error_body(detail: Any) -> dict[str, Any]:
    """`{"detail": detail}`, and when `detail` names invalid fields (`{field: [messages]}`, or
    a list of messages) also `message`: them in one line, `"field: message; other.sub:
    message"`. The SDKs show a string `message` or `detail` as their error's text, and only
    "422 Unprocessable Entity" otherwise."""
    if isinstance(detail, dict | list):
        return {"detail": detail, "message": "; ".join(_field_messages(detail, ""))}
    return {"detail": detail}


def _field_messages(detail: Any, path: str) -> list[str]:
    if isinstance(detail, dict):
        return [
            line
            for key, value in detail.items()
            for line in _field_messages(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(detail, list):
        return [line for value in detail for line in _field_messages(value, path)]
    return [f"{path}: {detail}" if path else str(detail)]


def error_headers(status: int) -> dict[str, str]:
    """Headers of a mapped error's response: `Retry-After` on a 503."""
    return {"Retry-After": str(DATABASE_RETRY_AFTER)} if status == 503 else {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, answering with `error_status` (and DRF's own headers:
    `WWW-Authenticate`, `Retry-After`)."""
    mapped = error_status(exc)
    if mapped is None:
        return None
    status, detail = mapped
    headers = error_headers(status)
    if isinstance(exc, drf_exceptions.APIException):
        drf_response = drf_exception_handler(exc, context)
        headers = dict(drf_response.headers.items()) if drf_response is not None else {}
        headers.pop("Content-Type", None)
    return Response(error_body(detail), status=status, headers=headers)


def error_response(exc: Exception) -> JsonResponse:
    """The JSON response for an error raised in an async (non-DRF) view; raises what is not a
    client's error (Django answers 500)."""
    mapped = error_status(exc)
    if mapped is None:
        raise exc
    status, detail = mapped
    return JsonResponse(error_body(detail), status=status, headers=error_headers(status))
