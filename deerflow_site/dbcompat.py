"""The few places where SQLite and PostgreSQL differ, isolated here."""

import json
import math
import re
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Expression, F, JSONField, Q, Value
from django.db.models.fields.json import KeyTransform


def hot_cursor(db: Any) -> Any:
    """A cursor of `db` (a connection: `connections[alias]`) for a hot-path statement in
    Django's style: on SQLite, the backend's `hot_cursor` (SQLite's cursor without Django's
    wrapper layers, same checks and errors); elsewhere Django's cursor."""
    hot = getattr(db, "hot_cursor", None)
    return db.cursor() if hot is None else hot()


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def row_lock_clause(db: Any = None) -> str:
    """The clause that locks a row read to change it (never its key): FOR NO KEY UPDATE on
    PostgreSQL, as every lock of a thread's, a run's or a user's row is. FOR UPDATE would also
    make the foreign-key checks of rows that reference it wait (a journal event, a stream
    event, a run), while a transaction holding such a check's lock may wait for this one: a
    deadlock (tests/test_lock_order.py). Only a delete locks FOR UPDATE. Empty on SQLite, whose
    IMMEDIATE transactions hold the database's write lock instead."""
    features = (db or connection).features
    if features.has_select_for_no_key_update:
        return " FOR NO KEY UPDATE"
    return " FOR UPDATE" if features.has_select_for_update else ""


def json_contains(field: str, value: dict[str, Any]) -> Q:
    """Rows whose JSON object `field` contains `value` (PostgreSQL's `@>`).

    SQLite has no containment operator: there, nested objects are matched key by key and any
    other value (scalars, lists) by equality; a key holding a double quote through json_each.
    """
    if is_postgresql():
        return Q(**{f"{field}__contains": value})
    return _key_by_key(field, [], value)


def _key_by_key(field: str, path: list[str], value: dict[str, Any]) -> Q:
    condition = Q()
    for key, expected in value.items():
        key_path = [*path, str(key)]
        if isinstance(expected, dict) and expected:
            condition &= _key_by_key(field, key_path, expected)
            continue
        if any('"' in part for part in key_path):
            condition &= Q(_SQLiteKeyEquals(field, key_path, expected))
            continue
        transform: Any = field
        for part in key_path:
            transform = KeyTransform(part, transform)
        expected_json = Value(expected, output_field=JSONField())
        condition &= Q(transform.get_lookup("exact")(transform, expected_json))
    return condition


class _SQLiteKeyEquals(Expression):
    """The value at a key path of a JSON column equals `expected`, as Django's key lookup
    compares (`true`, `false` and `null` by type, other values as JSON_EXTRACT gives them), for
    paths SQLite's JSON path syntax cannot name: a key holding a double quote (SQLite reads no
    escape in a quoted path label). Walks the path with json_each, one level per key."""

    conditional = True

    def __init__(self, field: str, path: list[str], expected: Any) -> None:
        super().__init__(output_field=BooleanField())
        self.column, self.path, self.expected = F(field), path, expected

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        by_type = self.expected is None or isinstance(self.expected, bool)
        params = [*params, *self.path, json.dumps(self.expected)]
        last = f"_key{len(self.path)}"
        expected = "%s" if by_type else "JSON_EXTRACT(%s, '$')"
        sql = (
            f"(CASE WHEN {last}.type IN ('false', 'true', 'null') THEN {last}.type "
            f"ELSE {last}.value END) = {expected}"
        )
        for depth in range(len(self.path), 0, -1):
            key, outer = f"_key{depth}", f"_key{depth - 1}"
            level = (
                column
                if depth == 1
                else f"CASE WHEN {outer}.type = 'object' THEN {outer}.value END"
            )
            sql = (
                f"EXISTS (SELECT 1 FROM json_each({level}) AS {key} WHERE {key}.key = %s AND {sql})"
            )
        return sql, params


def advisory_xact_lock(key: int) -> None:
    """Hold PostgreSQL's advisory lock `key` until the current transaction ends (waiting for it);
    nothing on SQLite, whose writers are serialised anyway."""
    if is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def estimated_row_count(table: str) -> int | None:
    """PostgreSQL's planner estimate of a table's rows (`pg_class.reltuples`, kept by ANALYZE
    and autovacuum): no scan. None on SQLite, or before the table was ever analyzed."""
    if not is_postgresql():
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] >= 0 else None


def jsonb_storable(value: Any) -> Any:
    """A JSON value every database can store: PostgreSQL's jsonb refuses the NUL character,
    which a model or a tool may well produce, so it becomes U+FFFD (in keys too)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {jsonb_storable(key): jsonb_storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonb_storable(item) for item in value]
    return value


#: How deep `storable_json` keeps a value's nesting (Python's JSON encoder recurses once per
#: level, SQLite's JSON functions stop at 1000, PostgreSQL's parser at its stack's depth).
STORABLE_JSON_DEPTH = 100
#: What `storable_json` puts in place of what nests deeper.
TOO_DEEP = "(nested too deep to store)"
#: The largest integer a JSON value keeps as a number in `storable_json` (64-bit signed).
STORABLE_INT = 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_json(value: Any, depth: int = STORABLE_JSON_DEPTH) -> Any:
    """`value` as JSON that both databases store, whatever it held; never raises.

    Strings lose NUL characters and lone surrogates (U+FFFD instead), NaN and infinities
    become None, integers beyond 64 bits their decimal text (None past ~3,000 digits), tuples
    lists, keys strings, any other object its repr, and what nests deeper than `depth` the
    text TOO_DEEP. Slower than `jsonb_storable`: for a value a database refused.
    """
    if isinstance(value, str):
        return _storable_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -STORABLE_INT <= value <= STORABLE_INT:
            return int(value)
        return str(value) if value.bit_length() <= 10_000 else None
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict | list | tuple) and depth <= 0:
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            _storable_text(key if isinstance(key, str) else _repr(key)): storable_json(
                item, depth - 1
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [storable_json(item, depth - 1) for item in value]
    return _storable_text(_repr(value))


def _storable_text(text: str) -> str:
    text = str(text)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 holds it
        text = _SURROGATE.sub("\ufffd", text)
    return text


def _repr(value: Any) -> str:
    try:
        return str(value) if isinstance(value, int | float) else repr(value)
    except Exception:  # an object whose repr fails is described by its type
        return f"<{type(value).__name__}>"


def db_datetime(value: Any) -> Any:
    """A timestamp column's value read by raw SQL as an aware datetime: PostgreSQL gives one,
    SQLite the text Django stored (in UTC)."""
    if isinstance(value, str):
        return connection.ops.convert_datetimefield_value(value, None, connection)
    return value
