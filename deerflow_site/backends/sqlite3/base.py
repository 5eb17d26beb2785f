"""Django's SQLite backend, its statements' placeholders converted once per text.

Django writes parameters as `%s`; Python's `sqlite3` takes `?`. Django's cursor converts each
statement's text at every execution with a regular expression (`(?<!%)%s`, which tests every
position of the text): on the loaded 2-core machine 7 µs for the thread's update and 44 µs for
the run's 29-column INSERT, about 150 µs per create+wait run. This backend remembers the
converted text of the last `CONVERTED_TEXTS` statements (and of as many with named parameters,
whose conversion formats the text with a dict of every name); everything else is Django's
SQLite backend (`vendor` "sqlite", the same features, operations, wrappers and errors).
"""

import functools
from typing import Any

from django.db.backends.sqlite3 import base

#: Statement texts whose `?` form is remembered (each a few hundred bytes; the hot path's and
#: the ORM's usual statements, `IN` lists of a few lengths).
CONVERTED_TEXTS = 2048


@functools.lru_cache(maxsize=CONVERTED_TEXTS)
def qmark(query: str) -> str:
    """`query` with Django's `%s` placeholders as SQLite's `?` (and `%%` as `%`)."""
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


@functools.lru_cache(maxsize=CONVERTED_TEXTS)
def named(query: str, param_names: tuple[str, ...]) -> str:
    """`query` with Django's `%(name)s` placeholders as SQLite's `:name`."""
    return query % {name: f":{name}" for name in param_names}


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is None:
            return qmark(query)
        return named(query, tuple(param_names))


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name: Any = None) -> Any:
        return self.connection.cursor(factory=SQLiteCursorWrapper)
