"""The SQLite backend (`deerflow_site.backends.sqlite3`): Django's, with each statement text's
placeholders converted once; every statement still goes through Django's cursor wrappers."""

import pytest
from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.backends.sqlite3.base import SQLiteCursorWrapper as DjangoCursor
from django.db.transaction import TransactionManagementError

from deerflow_site.backends.sqlite3 import base
from deerflow_site.backends.sqlite3.base import named, qmark
from deerflow_site.dbcompat import hot_cursor

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != settings.SQLITE_ENGINE, reason="SQLite only"
)

TEXTS = [
    "SELECT 1",
    "SELECT %s",
    "SELECT %s, %s WHERE x = %s",
    "SELECT '%%s' || %s",  # an escaped percent sign stays a literal %s
    "SELECT '100%%' || %s",
    "SELECT '%%%s'",
    'UPDATE "t" SET "a" = %s WHERE "b" IN (%s, %s, %s)',
]


@pytest.mark.parametrize("text", TEXTS)
def test_converted_as_django_converts(text: str) -> None:
    expected = DjangoCursor.convert_query(None, text)  # type: ignore[arg-type]
    assert qmark(text) == expected
    assert qmark(text) == expected  # from the cache


@pytest.mark.django_db
def test_statements_run_through_the_backend_and_its_wrappers() -> None:
    assert connection.vendor == "sqlite"
    seen: list[str] = []

    def note(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note), connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute("SELECT %s || '%%', %s", ["a", 2])
            assert cursor.fetchone() == ("a%", 2)
        cursor.execute("SELECT %(x)s", {"x": 3})  # Django's named style, converted as before
        assert cursor.fetchone() == (3,)
    assert len(seen) == 3


def test_named_parameters_converted_as_django_converts() -> None:
    text = "SELECT %(a)s, %(b)s WHERE x = %(a)s AND y LIKE '%%z'"
    expected = DjangoCursor.convert_query(None, text, param_names=["a", "b"])  # type: ignore[arg-type]
    assert named(text, ("a", "b")) == expected == "SELECT :a, :b WHERE x = :a AND y LIKE '%z'"


def test_a_long_text_is_converted_but_not_remembered() -> None:
    """A client's filter of hundreds of keys makes a statement of hundreds of kB per shape; the
    cache of 2,048 texts must not keep them (hundreds of MB, whatever the clients send)."""
    conditions = " AND ".join(
        f"JSON_EXTRACT(m, %s) = JSON_EXTRACT(%s, '$') -- {i}" for i in range(200)
    )
    long_text = f"SELECT 1 WHERE {conditions} AND '%%'"
    assert len(long_text) > base.CACHED_TEXT_CHARS

    def looked_up() -> tuple[int, int]:
        qmarks, names = base._cached_qmark.cache_info(), base._cached_named.cache_info()
        return qmarks.hits + qmarks.misses, names.hits + names.misses

    before = looked_up()
    assert qmark(long_text) == DjangoCursor.convert_query(None, long_text)  # type: ignore[arg-type]
    named_text = long_text.replace("%s", "%(a)s")
    expected = DjangoCursor.convert_query(None, named_text, param_names=["a"])  # type: ignore[arg-type]
    assert named(named_text, ("a",)) == expected
    assert looked_up() == before  # not through the cache
    qmark("SELECT %s")
    assert looked_up() == (before[0] + 1, before[1])  # a short one is


# --- The hot path's cursor (`DatabaseWrapper.hot_cursor`, `dbcompat.hot_cursor`) ---------------


@pytest.mark.django_db
def test_the_hot_cursor_answers_as_djangos_cursor() -> None:
    statements = [
        ("SELECT %s || '%%', %s", ["a", 2]),
        ("SELECT %(x)s, %(y)s, %(x)s", {"x": 3, "y": "b"}),
        ("SELECT CAST(%s AS timestamp)", ["2026-12-01 07:00:00.123456"]),
    ]
    connection.ensure_connection()
    for sql, params in statements:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            expected = cursor.fetchall()
        with hot_cursor(connection) as cursor:
            assert isinstance(cursor, base.HotCursor)
            cursor.execute(sql, params)
            assert cursor.fetchall() == expected


@pytest.mark.django_db
def test_the_hot_cursor_raises_djangos_errors_and_counts_rows() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE hot_t (k TEXT PRIMARY KEY, v INTEGER)")
        cursor.execute("INSERT INTO hot_t VALUES ('a', 1), ('b', 1)")
    with hot_cursor(connection) as cursor:
        cursor.execute("UPDATE hot_t SET v = v + %s WHERE v = %s", [1, 1])
        assert cursor.rowcount == 2
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute("INSERT INTO hot_t VALUES (%s, %s)", ["a", 3])
        with pytest.raises(OperationalError):
            cursor.execute("SELECT * FROM no_such_table WHERE x = %s", [1])


@pytest.mark.django_db(transaction=True)
def test_the_hot_cursor_refuses_a_statement_in_a_broken_transaction() -> None:
    with transaction.atomic():
        connection.needs_rollback = True
        with pytest.raises(TransactionManagementError), hot_cursor(connection) as cursor:
            cursor.execute("SELECT %s", [1])
        connection.needs_rollback = False


@pytest.mark.django_db
def test_wrappers_and_query_counts_see_the_hot_statements(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    """An `execute_wrapper` (tests count statements with them) or a query log (DEBUG,
    `assertNumQueries`) gets Django's cursor, which they see."""
    connection.ensure_connection()
    seen: list[str] = []

    def note(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note), hot_cursor(connection) as cursor:
        cursor.execute("SELECT %s", [1])
        assert cursor.fetchone() == (1,)
    assert seen == ["SELECT %s"]
    with django_assert_num_queries(1), hot_cursor(connection) as cursor:
        cursor.execute("SELECT %s", [2])


@pytest.mark.django_db(transaction=True)
def test_the_hot_cursor_is_shared_across_threads_as_djangos_is() -> None:
    """Another thread using this thread's connection: refused (DatabaseError) by both cursors,
    unless the connection allows sharing (the tests' in-memory database does)."""
    import threading

    db = connections["default"]  # this thread's connection, used from another below
    db.ensure_connection()
    outcomes: dict[str, str] = {}

    def elsewhere() -> None:
        for name, make in (("django", db.cursor), ("hot", db.hot_cursor)):
            try:
                with make() as cursor:
                    cursor.execute("SELECT %s", [1])
                outcomes[name] = "ran"
            except DatabaseError as exc:
                outcomes[name] = type(exc).__name__

    for sharing in (False, True):
        if sharing:
            db.inc_thread_sharing()
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert outcomes["hot"] == outcomes["django"], outcomes
        if sharing:
            assert outcomes["hot"] == "ran"
            db.dec_thread_sharing()
