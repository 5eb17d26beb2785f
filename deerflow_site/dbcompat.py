"""The few places where SQLite and PostgreSQL differ, isolated here."""

from typing import Any

from django.db import connection
from django.db.models import JSONField, Q, Value
from django.db.models.fields.json import KeyTransform


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def json_contains(field: str, value: dict[str, Any]) -> Q:
    """Rows whose JSON object `field` contains `value` (PostgreSQL's `@>`).

    SQLite has no containment operator: there, nested objects are matched key by key and any
    other value (scalars, lists) by equality.
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
        transform: Any = field
        for part in key_path:
            transform = KeyTransform(part, transform)
        expected_json = Value(expected, output_field=JSONField())
        condition &= Q(transform.get_lookup("exact")(transform, expected_json))
    return condition


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


def db_datetime(value: Any) -> Any:
    """A timestamp column's value read by raw SQL as an aware datetime: PostgreSQL gives one,
    SQLite the text Django stored (in UTC)."""
    if isinstance(value, str):
        return connection.ops.convert_datetimefield_value(value, None, connection)
    return value
