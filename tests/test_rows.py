"""deerflow_site.rows: a whole-row INSERT's parameters are what the ORM would save."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils.safestring import SafeString

from deerflow_site.rows import new_instance, row_params
from runs.models import Run
from threads.models import Thread

AWARE = datetime(2026, 11, 30, 22, 50, 1, 123456, tzinfo=UTC)
ELSEWHERE = AWARE.astimezone(timezone(timedelta(hours=5, minutes=30)))
RUN_ID = uuid.UUID("8a3d3c8e-7f4f-4c57-9bde-0d6f8f3f6b11")

VARIANTS: list[dict[str, Any]] = [
    {},  # every field at its default
    {
        "run_id": RUN_ID,
        "thread_id": "a-thread",
        "user_id": 7,
        "assistant_id": uuid.uuid4(),
        "graph_id": "bench",
        "status": Run.Status.RUNNING,  # an enum member, a str subclass
        "metadata": {"a": [1, "two", None]},
        "kwargs": {"input": {"text": "x"}},
        "resumable": True,
        "attempt": 3,
        "run_at": AWARE,
        "created_at": ELSEWHERE,
        "lease_expires_at": None,
        "error": None,
        "input_tokens": 12,
    },
    {  # values of another type than the field's, which its preparer converts
        "run_id": str(RUN_ID),
        "assistant_id": str(RUN_ID),
        "graph_id": 5,
        "attempt": "4",
        "input_tokens": True,
        "resumable": 1,
        "metadata": None,
        "error": {"error": "E", "message": "m"},
    },
    {  # a naive datetime (made aware, with a warning), a huge int, a Decimal, a str subclass
        "run_at": AWARE.replace(tzinfo=None),
        "input_tokens": 2**70,
        "attempt": Decimal("2"),
        "graph_id": Run.Status.PENDING,
        "worker_id": SafeString("w"),
    },
]


def _saved_by_the_orm(instance: Any) -> list[Any]:
    return _comparable(
        field.get_db_prep_save(getattr(instance, field.attname), connection)
        for field in type(instance)._meta.concrete_fields
    )


def _comparable(values: Any) -> list[Any]:
    """PostgreSQL's JSON parameters (psycopg's Jsonb) compared by the value they wrap."""
    return [(type(value), value.obj) if hasattr(value, "obj") else value for value in values]


@pytest.mark.parametrize("values", VARIANTS)
@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
def test_a_runs_row_parameters_are_what_the_orm_saves(values: dict[str, Any]) -> None:
    run = Run(**values)
    assert _comparable(row_params(run)) == _saved_by_the_orm(run)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"thread_id": "t", "owner_id": 3, "values": {"v": 1}, "created_at": AWARE},
        {"thread_id": 12, "owner_id": "3", "expires_at": ELSEWHERE, "interrupts": None},
    ],
)
def test_a_threads_row_parameters_are_what_the_orm_saves(values: dict[str, Any]) -> None:
    thread = Thread(**values)
    assert _comparable(row_params(thread)) == _saved_by_the_orm(thread)


@pytest.mark.parametrize("values", VARIANTS[:3])
def test_a_new_instance_is_what_the_model_builds_from_the_same_values(values: dict[str, Any]):
    values = {"run_id": RUN_ID, **values}  # else each gets a random one
    ours, djangos = new_instance(Run, **values), Run(**values)
    fields = {name: value for name, value in vars(djangos).items() if name != "_state"}
    assert {name: value for name, value in vars(ours).items() if name != "_state"} == fields
    assert (ours._state.adding, ours._state.db) == (djangos._state.adding, djangos._state.db)
    assert ours._state.fields_cache == djangos._state.fields_cache == {}
    with pytest.raises(TypeError, match="no column attributes"):
        new_instance(Run, thread=None)
