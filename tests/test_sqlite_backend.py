"""The SQLite backend (`deerflow_site.backends.sqlite3`): Django's, with each statement text's
placeholders converted once; every statement still goes through Django's cursor wrappers."""

import pytest
from django.conf import settings
from django.db import connection
from django.db.backends.sqlite3.base import SQLiteCursorWrapper as DjangoCursor

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
