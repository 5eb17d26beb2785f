"""Model instances from the rows of the hot path's plain SQL, loaded as the ORM loads them.

A raw queryset sets itself up anew for every query: the columns' order, the model's init order,
each column's converters. The hot path's statements (a thread read with the caller's rights, the
claim's candidates) select a model's concrete columns in one fixed order, so that set-up is
made once per model here: `model_columns` for the SELECT list, `from_row` for each row. The
other way, `new_instance` builds a new instance the same way, and `row_params` gives an
instance's column values for a whole-row INSERT, as the ORM would save them.
"""

import functools
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

M = TypeVar("M", bound=Model)


@functools.cache
def model_columns(model: type[Model], alias: str, deferred: frozenset[str] = frozenset()) -> str:
    """The SELECT list of the model's concrete columns, of the table aliased `alias`, in the
    order `from_row` reads them; without the fields named in `deferred`."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return ", ".join(f"{alias}.{quote(field.column)}" for field in _fields(model, deferred))


def _fields(model: type[Model], deferred: frozenset[str]) -> list[Any]:
    return [field for field in model._meta.concrete_fields if field.name not in deferred]


@functools.cache
def _loader(
    model: type[Model], deferred: frozenset[str]
) -> tuple[tuple[str, ...], tuple[tuple[Any, tuple[Any, ...]], ...]]:
    """The model's attribute names, and each column's expression with the converters Django
    applies to what the database returns (the backend's, then the field's: JSON decoded,
    SQLite's datetimes and UUIDs parsed)."""
    db = connections[DEFAULT_DB_ALIAS]
    columns = []
    fields = _fields(model, deferred)
    for field in fields:
        column = field.get_col(model._meta.db_table)
        columns.append(
            (column, tuple(db.ops.get_db_converters(column) + field.get_db_converters(db)))
        )
    return tuple(field.attname for field in fields), tuple(columns)


def from_row(
    model: type[M],
    row: tuple[Any, ...] | list[Any],
    deferred: frozenset[str] = frozenset(),
    db: BaseDatabaseWrapper | None = None,
) -> M:
    """An instance of `model` from a row that starts with `model_columns(model, ..., deferred)`
    (the columns after them are ignored), as loaded from the database (not `adding`); the
    fields in `deferred` are deferred, as the ORM's `defer()` leaves them (read on first use).
    `db`: the connection the row came from (default: this thread's to the default database)."""
    names, columns = _loader(model, deferred)
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    values = []
    for value, (column, converters) in zip(row, columns, strict=False):
        for convert in converters:
            value = convert(value, column, db)
        values.append(value)
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


@functools.cache
def _defaults(model: type[Model]) -> tuple[tuple[str, Any], ...]:
    """(attribute, the field's `get_default`) of each concrete column, in their order."""
    return tuple((field.attname, field.get_default) for field in model._meta.concrete_fields)


def new_instance(model: type[M], **values: Any) -> M:
    """A new instance of `model` (to be inserted: `adding`), from its columns' attribute values
    (`thread_id`, not `thread`), every other field at its default: what `model(**values)`
    gives, built the way Django builds one from a row (positional, without its keyword
    matching). Raises TypeError for a name that is not a column's attribute."""
    args = [values.pop(name) if name in values else default() for name, default in _defaults(model)]
    if values:
        raise TypeError(f"{model.__name__} has no column attributes {sorted(values)}")
    return model(*args)


#: The Python type whose values a field of each kind saves unchanged (its `get_prep_value`
#: converts to that type, and the backends take it as it is): those skip the field's preparer.
_SAVED_AS_IS = {
    "CharField": str,
    "TextField": str,
    "BooleanField": bool,
    "AutoField": int,
    "BigAutoField": int,
    "IntegerField": int,
    "BigIntegerField": int,
    "SmallIntegerField": int,
    "PositiveIntegerField": int,
    "PositiveBigIntegerField": int,
    "PositiveSmallIntegerField": int,
}


def _preparer(field: Any) -> Any:
    """The field's `get_db_prep_save`, with a shortcut for the values it would not change: a
    value of exactly its kind's type (a foreign key's: its target's), an aware datetime of a
    DateTimeField (the backend's adaptation only), a UUID of a UUIDField."""
    prepare = field.get_db_prep_save
    kind = (field.target_field if field.is_relation else field).get_internal_type()
    as_is = _SAVED_AS_IS.get(kind)
    if as_is is not None:
        return lambda value, db: value if type(value) is as_is else prepare(value, db)
    if kind == "DateTimeField":
        return lambda value, db: (
            db.ops.adapt_datetimefield_value(value)
            if type(value) is datetime and value.tzinfo is not None
            else prepare(value, db)
        )
    if kind == "UUIDField":
        return lambda value, db: (
            (value if db.features.has_native_uuid_field else value.hex)
            if type(value) is UUID
            else prepare(value, db)
        )
    return prepare


@functools.cache
def _preparers(model: type[Model]) -> tuple[tuple[str, Any], ...]:
    """(attribute, its preparer: `_preparer`) of each concrete column, in their order."""
    return tuple((field.attname, _preparer(field)) for field in model._meta.concrete_fields)


def row_params(instance: Model, db: BaseDatabaseWrapper | None = None) -> list[Any]:
    """The instance's concrete columns' values as the ORM saves them (JSON encoded, SQLite's
    datetimes and UUIDs as text), in `model._meta.concrete_fields` order: the parameters of an
    INSERT of the whole row, for `db` (default: this thread's connection to the default
    database)."""
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]  # once, rather than through the proxy per column
    return [prepare(getattr(instance, name), db) for name, prepare in _preparers(type(instance))]
