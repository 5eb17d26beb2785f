"""One error map: domain errors carry no HTTP status; `error_status` alone says which status each
kind is, for DRF views and async views alike."""

import logging
import socket
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django import db
from django.db.utils import DatabaseErrorWrapper
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
from tests.engine_support import make_thread
from tests.fixtures import client_for


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


def _as_django_error(driver_error: Exception) -> Exception:
    """`driver_error` as Django hands it on (its `DatabaseErrorWrapper`, for the driver's
    module): Django's class of error, the driver's as the cause."""
    driver = sys.modules[type(driver_error).__module__.split(".", 1)[0]]
    try:
        with DatabaseErrorWrapper(SimpleNamespace(Database=driver, errors_occurred=False)):
            raise driver_error
    except db.Error as exc:
        return exc
    raise AssertionError("not wrapped")


def _sqlite_error(sql: str, *, locked: bool = False, tmp_path: Path) -> sqlite3.Error:
    """The error SQLite raises for `sql` on a database of its own (held by an exclusive lock
    of another connection when `locked`, and waited for not at all)."""
    path = tmp_path / "own.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE present (id INTEGER)")
    if locked:
        holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        other.close()
        holder.close()
    raise AssertionError(f"{sql} did not fail")


def _refused_postgres_error() -> Exception:
    """What psycopg raises for a PostgreSQL that refuses connections (no server on the port)."""
    psycopg = pytest.importorskip("psycopg")
    with socket.socket() as probe:  # a port nobody listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        psycopg.connect(host="127.0.0.1", port=port, dbname="x", connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("a connection was made")


def _unavailable_errors(tmp_path: Path) -> list[Exception]:
    return [
        _as_django_error(_sqlite_error("SELECT * FROM present", locked=True, tmp_path=tmp_path)),
        _as_django_error(_refused_postgres_error()),
    ]


def test_an_unreachable_database_is_a_503_with_retry_after_from_both_kinds_of_view(
    tmp_path: Path,
) -> None:
    for error in _unavailable_errors(tmp_path):
        drf = exception_handler(error, {"view": APIView()})
        plain = error_response(error)

        assert drf is not None, error
        assert (drf.status_code, plain.status_code) == (503, 503)
        assert drf.data == {"detail": DATABASE_UNAVAILABLE}
        assert drf.headers["Retry-After"] == plain.headers["Retry-After"] == "5"


def test_a_database_error_of_a_statement_is_not_taken_for_an_unreachable_database(
    tmp_path: Path,
) -> None:
    missing_table = _as_django_error(_sqlite_error("SELECT * FROM absent", tmp_path=tmp_path))

    assert isinstance(missing_table, db.OperationalError)
    assert error_status(missing_table) is None
    assert exception_handler(missing_table, {"view": APIView()}) is None
    with pytest.raises(db.OperationalError):
        error_response(missing_table)


@pytest.mark.django_db
def test_a_missing_table_is_a_logged_500_with_a_json_body(
    user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A request whose query fails for good (here: its table renamed away, inside the test's
    transaction) answers 500 in JSON and logs the error with its traceback; no 503."""
    thread = make_thread(user=user)
    with db.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE feedback_feedback RENAME TO feedback_elsewhere")
    client = client_for(user)
    client.raise_request_exception = False

    with caplog.at_level(logging.WARNING):
        response = client.get(f"/api/threads/{thread.pk}/feedback")

    assert response.status_code == 500, response.content
    assert response.json() == {"detail": "Internal server error."}
    assert "Retry-After" not in response.headers
    failures = [
        r for r in caplog.records if r.exc_info and "feedback_feedback" in str(r.exc_info[1])
    ]
    assert failures, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.getMessage().startswith("database unavailable")]


@pytest.mark.parametrize("error", DOMAIN_ERRORS, ids=[e.__qualname__ for e in DOMAIN_ERRORS])
def test_a_default_detail_is_one_line_of_text(error: type) -> None:
    # A docstring wrapped over lines is the client's message: no newline or indentation in it.
    detail = error.__new__(error).default_detail()

    assert detail == " ".join(detail.split()), repr(detail)
