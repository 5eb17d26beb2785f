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
"""

import functools
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
