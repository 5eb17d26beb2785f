"""Django's SQLite backend, its statements' placeholders converted once per text.

Django writes parameters as `%s`; Python's `sqlite3` takes `?`. Django's cursor converts each
statement's text at every execution with a regular expression (`(?<!%)%s`, which tests every
position of the text): on the loaded 2-core machine 7 µs for the thread's update and 44 µs for
the run's 29-column INSERT, about 150 µs per create+wait run. This backend remembers the
converted text of the last `CONVERTED_TEXTS` statements (and of as many with named parameters,
whose conversion formats the text with a dict of every name) of at most `CACHED_TEXT_CHARS`
characters: a longer text (a client's filter of hundreds of keys makes one of 200 kB per
shape) is converted at each execution, as Django does, so that the cache stays a few MB
whatever the clients send; everything else is Django's SQLite backend (`vendor` "sqlite", the
same features, operations, wrappers and errors).

`DatabaseWrapper.hot_cursor` is for the run's hot statements (`deerflow_site.dbcompat.
hot_cursor`): SQLite's own cursor behind the checks and error translation Django's cursor
makes, without its three wrapper layers (about 10 µs per statement).
"""

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from django.db.backends.sqlite3 import base

#: Statement texts whose `?` form is remembered (each a few hundred bytes; the hot path's and
#: the ORM's usual statements, `IN` lists of a few lengths).
CONVERTED_TEXTS = 2048
#: The longest statement text remembered (characters; the run's INSERT is about 700).
CACHED_TEXT_CHARS = 4096


def _qmark(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


def _named(query: str, param_names: tuple[str, ...]) -> str:
    return query % {name: f":{name}" for name in param_names}


_cached_qmark = functools.lru_cache(maxsize=CONVERTED_TEXTS)(_qmark)
_cached_named = functools.lru_cache(maxsize=CONVERTED_TEXTS)(_named)


def qmark(query: str) -> str:
    """`query` with Django's `%s` placeholders as SQLite's `?` (and `%%` as `%`); remembered
    when at most `CACHED_TEXT_CHARS` long."""
    if len(query) > CACHED_TEXT_CHARS:
        return _qmark(query)
    return _cached_qmark(query)


def named(query: str, param_names: tuple[str, ...]) -> str:
    """`query` with Django's `%(name)s` placeholders as SQLite's `:name`; remembered when at
    most `CACHED_TEXT_CHARS` long."""
    if len(query) > CACHED_TEXT_CHARS:
        return _named(query, param_names)
    return _cached_named(query, param_names)


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is None:
            return qmark(query)
        return named(query, tuple(param_names))


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name: Any = None) -> Any:
        return self.connection.cursor(factory=SQLiteCursorWrapper)

    def hot_cursor(self) -> Any:
        """A `HotCursor`, or Django's own cursor when this connection is not open yet (or due
        a health check), logs its queries (DEBUG, `assertNumQueries`) or has an
        `execute_wrapper`: those then see every statement as before."""
        if (
            self.connection is None
            or self.execute_wrappers
            or self.queries_logged
            or (self.health_check_enabled and not self.health_check_done)
        ):
            return self.cursor()
        self.validate_thread_sharing()
        return HotCursor(self, self.connection.cursor())


class HotCursor:
    """SQLite's cursor for statements in Django's style (`%s` or `%(name)s` placeholders, always
    with parameters), checked and translated as Django's `CursorWrapper` does: the connection
    used only by its thread, no statement inside a transaction that must be rolled back
    (TransactionManagementError), SQLite's errors as Django's (`django.db.IntegrityError`...).
    No debug log and no `execute_wrapper`: `DatabaseWrapper.hot_cursor` gives Django's cursor
    while either is on."""

    __slots__ = ("_cursor", "_db")

    def __init__(self, db: "DatabaseWrapper", cursor: Any) -> None:
        self._db = db
        self._cursor = cursor

    def __enter__(self) -> "HotCursor":
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        db = self._db
        db.validate_no_broken_transaction()
        if isinstance(params, Mapping):
            text = named(sql, tuple(params))
        else:
            text = qmark(sql)
        with db.wrap_database_errors:
            self._cursor.execute(text, params)

    def fetchone(self) -> Any:
        with self._db.wrap_database_errors:
            return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with self._db.wrap_database_errors:
            return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount
