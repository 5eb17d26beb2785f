"""The SQLite backend (`deerflow_site.backends.sqlite3`): Django's, with each statement text's
placeholders converted once; every statement still goes through Django's cursor wrappers."""

import pytest
from django.conf import settings
from django.db import connection
from django.db.backends.sqlite3.base import SQLiteCursorWrapper as DjangoCursor

from deerflow_site.backends.sqlite3 import base
from deerflow_site.backends.sqlite3.base import named, qmark

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
