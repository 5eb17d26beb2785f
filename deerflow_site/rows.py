"""Model instances from the rows of the hot path's plain SQL, loaded as the ORM loads them.

A raw queryset sets itself up anew for every query: the columns' order, the model's init order,
each column's converters. The hot path's statements (a thread read with the caller's rights, the
claim's candidates) select a model's concrete columns in one fixed order, so that set-up is
made once per model here: `model_columns` for the SELECT list, `from_row` for each row. The
other way, `row_params` gives an instance's column values for a whole-row INSERT, as the ORM
would save them.
"""

import functools
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
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
    model: type[M], row: tuple[Any, ...] | list[Any], deferred: frozenset[str] = frozenset()
) -> M:
    """An instance of `model` from a row that starts with `model_columns(model, ..., deferred)`
    (the columns after them are ignored), as loaded from the database (not `adding`); the
    fields in `deferred` are deferred, as the ORM's `defer()` leaves them (read on first use)."""
    names, columns = _loader(model, deferred)
    db = connections[DEFAULT_DB_ALIAS]
    values = []
    for value, (column, converters) in zip(row, columns, strict=False):
        for convert in converters:
            value = convert(value, column, db)
        values.append(value)
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


@functools.cache
def _preparers(model: type[Model]) -> tuple[tuple[str, Any], ...]:
    """(attribute, the field's `get_db_prep_save`) of each concrete column, in their order."""
    return tuple((field.attname, field.get_db_prep_save) for field in model._meta.concrete_fields)


def row_params(instance: Model) -> list[Any]:
    """The instance's concrete columns' values as the ORM saves them (JSON encoded, SQLite's
    datetimes and UUIDs as text), in `model._meta.concrete_fields` order: the parameters of an
    INSERT of the whole row."""
    db = connections[DEFAULT_DB_ALIAS]  # once, rather than through the proxy per column
    return [prepare(getattr(instance, name), db) for name, prepare in _preparers(type(instance))]
