"""Django's SQLite backend, its statements' placeholders converted once per text.

Django writes parameters as `%s`; Python's `sqlite3` takes `?`. Django's cursor converts each
statement's text at every execution with a regular expression (`(?<!%)%s`, which tests every
position of the text): 7 µs for the thread's update, 44 µs for the run's 29-column INSERT, on
every statement of the run's hot path and of the ORM. This backend remembers the converted
text of the last `CONVERTED_TEXTS` statements; everything else is Django's SQLite backend
(`vendor` "sqlite", the same features, operations, wrappers and errors).
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


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is None:
            return qmark(query)
        return super().convert_query(query, param_names=param_names)


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name: Any = None) -> Any:
        return self.connection.cursor(factory=SQLiteCursorWrapper)
