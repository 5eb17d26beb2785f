"""One error map: domain errors carry no HTTP status; `error_status` alone says which status each
kind is, for DRF views and async views alike."""

import pytest
from django import db
from rest_framework.views import APIView

import deerflow_site.urls  # noqa: F401 - imports every app's errors
from deerflow_site.api.errors import (
    DATABASE_UNAVAILABLE,
    STATUS_OF_KIND,
    error_response,
    error_status,
    exception_handler,
)
from deerflow_site.errors import BadRequest, Conflict, DomainError, Forbidden, Invalid, NotFound
from runs.engine import AssistantNotFound, CheckpointNotFound


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


DOMAIN_ERRORS = _all_subclasses(DomainError)


@pytest.mark.parametrize("error", DOMAIN_ERRORS, ids=[e.__qualname__ for e in DOMAIN_ERRORS])
def test_domain_errors_carry_no_http_status(error: type) -> None:
    assert not any("status_code" in vars(cls) for cls in error.__mro__), error


@pytest.mark.parametrize(
    "error, status",
    [(BadRequest, 400), (Forbidden, 403), (NotFound, 404), (Conflict, 409), (Invalid, 422)],
)
def test_each_kind_maps_to_its_status(error: type, status: int) -> None:
    assert error_status(error("why")) == (status, "why")
    assert STATUS_OF_KIND[error] == status


def test_engine_errors_are_domain_errors_mapped_like_any_other() -> None:
    assert error_status(AssistantNotFound())[0] == 404
    assert error_status(CheckpointNotFound())[0] == 404


def test_drf_views_and_async_views_answer_alike() -> None:
    error = Conflict("busy")
    drf = exception_handler(error, {"view": APIView()})
    plain = error_response(error)

    assert drf is not None
    assert (drf.status_code, drf.data) == (plain.status_code, {"detail": "busy"})
    assert plain.content == b'{"detail": "busy"}'


def test_what_no_client_caused_is_not_mapped() -> None:
    assert error_status(RuntimeError("bug")) is None
    with pytest.raises(RuntimeError):
        error_response(RuntimeError("bug"))


@pytest.mark.parametrize(
    "error",
    [db.OperationalError("database is locked"), db.InterfaceError("connection already closed")],
)
def test_an_unreachable_database_is_a_503_with_retry_after_from_both_kinds_of_view(
    error: Exception,
) -> None:
    drf = exception_handler(error, {"view": APIView()})
    plain = error_response(error)

    assert drf is not None
    assert (drf.status_code, plain.status_code) == (503, 503)
    assert drf.data == {"detail": DATABASE_UNAVAILABLE}
    assert drf.headers["Retry-After"] == plain.headers["Retry-After"] == "5"


@pytest.mark.parametrize("error", DOMAIN_ERRORS, ids=[e.__qualname__ for e in DOMAIN_ERRORS])
def test_a_default_detail_is_one_line_of_text(error: type) -> None:
    # A docstring wrapped over lines is the client's message: no newline or indentation in it.
    detail = error.__new__(error).default_detail()

    assert detail == " ".join(detail.split()), repr(detail)
