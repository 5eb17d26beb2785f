"""The run's row on its hot path as SQL statements: admission's insert, the claim's start,
the end of a run (its status, its thread's), and the final answer `/wait` reads.

Every create+wait runs each of these once or more; the ORM took longer to compile them than the
database to run them. One text serves SQLite and PostgreSQL: identifiers are quoted the
standard way, values go as parameters prepared by the model's own fields
(`get_db_prep_save`, `from_db_value`), so JSON, UUIDs and datetimes are stored exactly as the
ORM stores them. Sync functions on the caller's connection, inside the caller's transaction;
each looks that connection up once (`_db`: a lookup in `connections` costs a few µs, and the
`connection` proxy makes one at every attribute).
"""

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from deerflow_site.dbcompat import hot_cursor, row_lock_clause
from deerflow_site.rows import row_params
from runs.models import Run
from threads.models import Thread


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Statuses are written into the statements as literals, never as parameters: SQLite may use a
# partial index only when a statement's own text implies the index's condition, and it prepares
# a statement again at every execution when a parameter is compared with a column that a
# partial index's condition names (measured: 35 µs against 9 µs for the queue's read).
PENDING = _literal(Run.Status.PENDING.value)
RUNNING = _literal(Run.Status.RUNNING.value)
#: A pending or running run of the table aliased `{alias}`, as `runs.models.ACTIVE_RUN` reads:
#: the partial indexes of active runs serve the statements that say it this way.
ACTIVE = '({alias}"status" = ' + PENDING + ' OR {alias}"status" = ' + RUNNING + ")"


def active(alias: str = "") -> str:
    """`ACTIVE` for the table aliased `alias` ("": the statement's only table)."""
    return ACTIVE.format(alias=f"{alias}." if alias else "")


# The thread's row, locked (`{lock}`: `row_lock_clause`, FOR NO KEY UPDATE on PostgreSQL;
# SQLite's IMMEDIATE transactions serialise writers instead).
LOCK_THREAD_SQL = 'SELECT "interrupts" FROM {threads} WHERE "thread_id" = %s{lock}'
IN_FLIGHT_SQL = (
    'SELECT "run_id" FROM {runs} WHERE "thread_id" = %s AND '
    + active()
    + ' ORDER BY "created_at"{lock}'
)
LOCK_USER_SQL = "SELECT 1 FROM {users} WHERE {user_pk} = %s{lock}"
USER_ACTIVE_RUNS_SQL = 'SELECT COUNT(*) FROM {runs} WHERE "user_id" = %s AND ' + active()
# A run starting now: its thread's one running run is the partial unique index's to refuse
# (ON CONFLICT DO NOTHING: no row, rather than an error that would abort PostgreSQL's
# transaction).
INSERT_RUN_SQL = "INSERT INTO {runs} ({columns}) VALUES ({values})"
INSERT_RUN_IF_FREE_SQL = INSERT_RUN_SQL + " ON CONFLICT DO NOTHING"
THREAD_BUSY_SQL = (
    'UPDATE {threads} SET "metadata" = %s, "status" = %s, "updated_at" = %s WHERE "thread_id" = %s'
)
START_RUNS_SQL = (
    'UPDATE {runs} SET "status" = %s, "worker_id" = %s, "started_at" = %s,'
    ' "attempt" = "attempt" + 1, "lease_expires_at" = %s, "updated_at" = %s'
    ' WHERE "run_id" IN ({run_ids})'
)
END_RUN_SQL = (
    'UPDATE {runs} SET "status" = %s, "error" = %s, "rolled_back" = %s, "ended_at" = %s,'
    ' "lease_expires_at" = NULL, "updated_at" = %s'
    ' WHERE "run_id" = %s AND "status" = ' + RUNNING + ' AND "worker_id" = %s'
)
# The thread's status is `busy` while a run of it is pending or running, else the one given:
# decided in the UPDATE, under the row lock `lock_thread` took first (so that no admission
# commits a run in between), rather than by one more statement.
SETTLE_STATUS = (
    '"status" = CASE WHEN EXISTS (SELECT 1 FROM {runs} a WHERE a."thread_id" = %s AND '
    + active("a")
    + ") THEN %s ELSE %s END"
)
SETTLE_THREAD_SQL = (
    "UPDATE {threads} SET " + SETTLE_STATUS + ', "error" = %s, "updated_at" = %s'
    ' WHERE "thread_id" = %s'
)
SETTLE_THREAD_WITH_STATE_SQL = (
    "UPDATE {threads} SET " + SETTLE_STATUS + ', "error" = %s, "updated_at" = %s,'
    ' "values" = %s, "interrupts" = %s, "state_updated_at" = %s WHERE "thread_id" = %s'
)
FINAL_ANSWER_SQL = (
    'SELECT r."status", r."error", t."values", t."interrupts" FROM {runs} r'
    ' JOIN {threads} t ON t."thread_id" = r."thread_id" WHERE r."run_id" = %s'
)
NEXT_RUN_AT_SQL = (
    'SELECT MIN("run_at") FROM {runs} WHERE "status" = ' + PENDING + ' AND "run_at" > %s'
)


def _db() -> BaseDatabaseWrapper:
    """This thread's connection to the default database."""
    return connections[DEFAULT_DB_ALIAS]


@functools.cache
def _tables() -> dict[str, str]:
    quote = _db().ops.quote_name
    return {"runs": quote(Run._meta.db_table), "threads": quote(Thread._meta.db_table)}


@functools.lru_cache(maxsize=256)
def _sql(template: str, **extra: str) -> str:
    """`template` with the tables' names and `extra` filled in (each text made once: 1-6 µs
    of formatting per statement otherwise)."""
    return template.format(**_tables(), **extra)


def locks_rows(db: BaseDatabaseWrapper | None = None) -> bool:
    """Whether the database locks rows (PostgreSQL); SQLite's IMMEDIATE transactions hold the
    whole database's write lock from their BEGIN instead."""
    return (db or _db()).features.has_select_for_update


def _run_key(run_id: UUID | str, db: BaseDatabaseWrapper) -> Any:
    return Run._meta.pk.get_db_prep_value(run_id, db)


def _when(value: datetime | None, db: BaseDatabaseWrapper) -> Any:
    return db.ops.adapt_datetimefield_value(value)


def _json(model: type[Run] | type[Thread], name: str, value: Any, db: BaseDatabaseWrapper) -> Any:
    return _preparer(model, name)(value, db)


@functools.cache
def _preparer(model: type[Run] | type[Thread], name: str) -> Any:
    """The field's `get_db_prep_save` (looked up once)."""
    return model._meta.get_field(name).get_db_prep_save


def _from_json(
    model: type[Run] | type[Thread], name: str, value: Any, db: BaseDatabaseWrapper
) -> Any:
    field: Any = model._meta.get_field(name)
    return field.from_db_value(value, None, db)


@functools.cache
def _run_fields() -> tuple[Field, ...]:
    return tuple(Run._meta.concrete_fields)


def _execute(db: BaseDatabaseWrapper, sql: str, params: Iterable[Any]) -> Any:
    with hot_cursor(db) as cursor:
        cursor.execute(sql, list(params))
        return cursor.rowcount


def _fetchone(db: BaseDatabaseWrapper, sql: str, params: Iterable[Any]) -> tuple[Any, ...] | None:
    with hot_cursor(db) as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchone()


# --- Admission ----------------------------------------------------------------------------------


def lock_user(user_id: int) -> None:
    """Hold the user's row until the transaction ends (admissions of one user in turn)."""
    users = get_user_model()._meta
    db = _db()
    quote = db.ops.quote_name
    sql = LOCK_USER_SQL.format(
        users=quote(users.db_table), user_pk=quote(users.pk.column), lock=row_lock_clause(db)
    )
    _fetchone(db, sql, [user_id])


def count_active_runs_of_user(user_id: int) -> int:
    """The user's pending and running runs."""
    row = _fetchone(_db(), _sql(USER_ACTIVE_RUNS_SQL), [user_id])
    return int(row[0]) if row else 0


def lock_in_flight_run_keys(thread_id: str) -> list[Any]:
    """The keys of the thread's pending and running runs (as stored: for `pk__in` filters),
    oldest first, row-locked where the database can; usually none, so no model is built."""
    db = _db()
    with hot_cursor(db) as cursor:
        cursor.execute(_sql(IN_FLIGHT_SQL, lock=row_lock_clause(db)), [thread_id])
        return [row[0] for row in cursor.fetchall()]


@functools.cache
def _insert_run_sql(*, unless_thread_runs: bool) -> str:
    """The INSERT of a whole run row (its text made once: the table never changes)."""
    fields = _run_fields()
    return _sql(
        INSERT_RUN_IF_FREE_SQL if unless_thread_runs else INSERT_RUN_SQL,
        columns=", ".join(_db().ops.quote_name(f.column) for f in fields),
        values=", ".join(["%s"] * len(fields)),
    )


def insert_run(run: Run, *, unless_thread_runs: bool = False) -> bool:
    """Insert `run` (a Run built in memory, every field set, `created_at` included) as one row.

    `unless_thread_runs`: for a run inserted `running`, insert nothing (False) when its thread
    has a running run already (the one-running-run-per-thread index), instead of raising
    IntegrityError. Returns whether the row was inserted; the instance is then saved (not
    `adding`).
    """
    db = _db()
    with hot_cursor(db) as cursor:
        cursor.execute(_insert_run_sql(unless_thread_runs=unless_thread_runs), row_params(run, db))
        inserted = cursor.rowcount
    if inserted:
        run._state.adding = False
        run._state.db = db.alias
    return bool(inserted)


def mark_thread_busy(thread_id: str, *, metadata: dict[str, Any], now: datetime) -> None:
    """The thread `busy`, with the metadata of the run just admitted."""
    db = _db()
    _execute(db, _sql(THREAD_BUSY_SQL), _busy_params(db, thread_id, metadata, now))


def _busy_params(
    db: BaseDatabaseWrapper, thread_id: str, metadata: dict[str, Any], now: datetime
) -> list[Any]:
    metadata_value = _json(Thread, "metadata", metadata, db)
    return [metadata_value, Thread.Status.BUSY.value, _when(now, db), thread_id]


def insert_run_marking_busy(run: Run, *, metadata: dict[str, Any], now: datetime) -> None:
    """`insert_run(run)` and `mark_thread_busy(run.thread_id, ...)`: on PostgreSQL one
    statement (the thread's UPDATE in a WITH, one round trip less per admission; the caller
    holds the thread's row lock), elsewhere the two (SQLite has no UPDATE in a WITH)."""
    db = _db()
    if db.vendor != "postgresql":
        insert_run(run)
        mark_thread_busy(run.thread_id, metadata=metadata, now=now)
        return
    params = [*_busy_params(db, run.thread_id, metadata, now), *row_params(run, db)]
    with hot_cursor(db) as cursor:
        cursor.execute(_insert_run_marking_busy_sql(), params)
    run._state.adding = False
    run._state.db = db.alias


@functools.cache
def _insert_run_marking_busy_sql() -> str:
    return f"WITH busy AS ({_sql(THREAD_BUSY_SQL)}) {_insert_run_sql(unless_thread_runs=False)}"


# --- The claim ----------------------------------------------------------------------------------


def start_runs(
    run_ids: list[UUID], *, worker_id: str, now: datetime, lease_expires_at: datetime
) -> int:
    """Mark runs `running` under `worker_id` and a lease (one UPDATE); returns the rows changed."""
    if not run_ids:
        return 0
    sql = _sql(START_RUNS_SQL, run_ids=", ".join(["%s"] * len(run_ids)))
    db = _db()
    when = _when(now, db)
    params = [Run.Status.RUNNING.value, worker_id, when, _when(lease_expires_at, db), when]
    return _execute(db, sql, [*params, *(_run_key(run_id, db) for run_id in run_ids)])


def next_run_at(now: datetime) -> datetime | None:
    """When the earliest pending run not yet due becomes due (None: there is none)."""
    db = _db()
    row = _fetchone(db, _sql(NEXT_RUN_AT_SQL), [_when(now, db)])
    return run_at_from_db(row[0] if row else None)


def run_at_from_db(value: Any) -> datetime | None:
    """A `run_at` value as the database returned it (an aggregate's too), as a datetime."""
    if value is None:
        return None
    column = Run._meta.get_field("run_at").get_col(Run._meta.db_table)
    db = _db()
    for converter in db.ops.get_db_converters(column):
        value = converter(value, column, db)
    return value


# --- The end of a run ----------------------------------------------------------------------------


def hold_thread_key(thread_id: str) -> bool:
    """Take the lock a foreign key's check takes on the thread's row (PostgreSQL's FOR KEY
    SHARE; nothing on SQLite, whose writers are serialised), before a row that references both
    a run and its thread is inserted: that check locks the run first, the thread next, while a
    thread's deletion locks the thread, then its runs. Taken first, it makes the insert wait
    for the deletion holding nothing. False when the thread is gone."""
    db = _db()
    if not db.features.has_select_for_no_key_update:
        return True
    return _fetchone(db, _sql(LOCK_THREAD_SQL, lock=" FOR KEY SHARE"), [thread_id]) is not None


def lock_thread(thread_id: str) -> dict[str, Any] | None:
    """Lock the thread's row; its interrupts (None: the thread is gone)."""
    db = _db()
    row = _fetchone(db, _sql(LOCK_THREAD_SQL, lock=row_lock_clause(db)), [thread_id])
    if row is None:
        return None
    return _from_json(Thread, "interrupts", row[0], db) or {}


def end_run(
    run: Run, *, status: str, error: dict[str, str] | None, rolled_back: bool, now: datetime
) -> bool:
    """The run's final status, if it is still running under its worker's claim (else False)."""
    db = _db()
    when = _when(now, db)
    params = [status, _json(Run, "error", error, db), rolled_back, when, when]
    params += [_run_key(run.pk, db), run.worker_id]
    return bool(_execute(db, _sql(END_RUN_SQL), params))


def settle_thread_row(
    thread_id: str,
    *,
    status: str,
    error: dict[str, str] | None,
    now: datetime,
    state: tuple[Any, Any] | None,
    with_: tuple[str, list[Any]] | None = None,
) -> None:
    """The thread's status (`busy` instead while a run of it is pending or running: call with
    the thread's row locked) and error; with `state` (values, interrupts: JSON-storable), also
    the snapshot of its latest checkpoint. `with_`: `WITH` clauses (PostgreSQL) and their
    parameters to run in the same statement (`journal.store.journal_with`)."""
    db = _db()
    when = _when(now, db)
    busy = [thread_id, Thread.Status.BUSY.value, status]
    params = [*busy, _json(Thread, "error", error, db), when]
    if state is None:
        statement, params = _sql(SETTLE_THREAD_SQL), [*params, thread_id]
    else:
        values, interrupts = state
        params += [_json(Thread, "values", values, db), _json(Thread, "interrupts", interrupts, db)]
        statement, params = _sql(SETTLE_THREAD_WITH_STATE_SQL), [*params, when, thread_id]
    if with_ is not None:
        statement, params = f"WITH {with_[0]} {statement}", [*with_[1], *params]
    _execute(db, statement, params)


# --- The final answer ----------------------------------------------------------------------------


def final_answer_row(run_id: UUID | str) -> tuple[str, Any, Any, Any] | None:
    """(status, error, thread values, thread interrupts) of a run, JSON decoded; None when the
    run is gone."""
    db = _db()
    row = _fetchone(db, _sql(FINAL_ANSWER_SQL), [_run_key(run_id, db)])
    if row is None:
        return None
    status, error, values, interrupts = row
    return (
        status,
        _from_json(Run, "error", error, db),
        _from_json(Thread, "values", values, db),
        _from_json(Thread, "interrupts", interrupts, db),
    )
