"""Writing the journal: events numbered per thread, token usage added to the run.

`seq` comes from the thread's counter row, taken with one `INSERT … ON CONFLICT DO UPDATE …
RETURNING` inside the writer's transaction (the same text on SQLite and PostgreSQL). The row
stays locked until that transaction commits, so writers on one thread (a worker's flush, a web
process's cancel, the reaper) take their numbers one after another: seqs are unique, and a
later commit always has the higher ones, so a reader paging by `after_seq` misses nothing.
On PostgreSQL the counter's update and the events' INSERT are one statement (the update in a
`WITH`), one round trip rather than two; SQLite has no INSERT in a `WITH`.
"""

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from deerflow_site.dbcompat import hot_cursor, jsonb_storable, storable_json
from runs.journal.catalog import CATEGORY_OF, EventType
from runs.models import Run, RunEvent, RunModelUsage, ThreadEventCounter

ALLOCATE_SEQ_SQL = """
    INSERT INTO {counters} (thread_id, last_seq) VALUES (%s, %s)
    ON CONFLICT (thread_id) DO UPDATE SET last_seq = {counters}.last_seq + excluded.last_seq
    RETURNING last_seq
"""
ADD_MODEL_USAGE_SQL = """
    INSERT INTO {usage} (run_id, model_name, input_tokens, output_tokens, total_tokens, llm_calls)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (run_id, model_name) DO UPDATE SET
        input_tokens = {usage}.input_tokens + excluded.input_tokens,
        output_tokens = {usage}.output_tokens + excluded.output_tokens,
        total_tokens = {usage}.total_tokens + excluded.total_tokens,
        llm_calls = {usage}.llm_calls + excluded.llm_calls
"""

# Every run writes two events or more with its end: one INSERT of all of them, not the ORM's
# bulk_create (whose compilation cost more than the write).
#: Rows per INSERT (8 parameters each, within SQLite's and PostgreSQL's limits).
INSERT_EVENTS_ROWS = 500
INSERT_EVENTS_SQL = """
    INSERT INTO {events} (thread_id, run_id, seq, event_type, category, content, metadata,
                          created_at)
    VALUES {rows}
"""

# PostgreSQL: the counter's update and the events in one statement. The events' seqs are the
# counter's new last minus their count plus their place (`n`, 1 to the count); each column
# of the VALUES is cast to its own type (a column of NULLs would otherwise be text).
JOURNAL_WITH_SQL = (
    "counter AS ("
    + ALLOCATE_SEQ_SQL
    + """), journal AS (
    INSERT INTO {events} (thread_id, run_id, seq, event_type, category, content, metadata,
                          created_at)
    SELECT e.thread_id, e.run_id, counter.last_seq - %s + e.n, e.event_type, e.category,
           e.content, e.metadata, e.created_at
    FROM counter, (VALUES {rows})
        AS e (thread_id, run_id, n, event_type, category, content, metadata, created_at)
    RETURNING seq
)"""
)
INSERT_COUNTED_EVENTS_SQL = "WITH {journal} SELECT seq FROM journal"
_EVENT_COLUMNS = (
    "thread", "run", "seq", "event_type", "category", "content", "metadata", "created_at"
)  # fmt: skip


@dataclass
class JournalEntry:
    """An event not yet written: its seq is given when it is."""

    event_type: EventType
    content: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=timezone.now)


@dataclass
class ModelUsage:
    """Tokens and calls of one chat model (counts, never negative)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    llm_calls: int = 0

    def add(self, other: "ModelUsage") -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.total_tokens += other.total_tokens
        self.llm_calls += other.llm_calls

    def clamped(self) -> "ModelUsage":
        """The counts within what their columns hold (0 to MAX_TOKENS, 0 to MAX_CALLS); a
        count that is no number at all counts 0."""
        return ModelUsage(
            input_tokens=clamp_count(self.input_tokens, MAX_TOKENS),
            output_tokens=clamp_count(self.output_tokens, MAX_TOKENS),
            total_tokens=clamp_count(self.total_tokens, MAX_TOKENS),
            llm_calls=clamp_count(self.llm_calls, MAX_CALLS),
        )


#: The most tokens a count column holds (a positive 64-bit integer), and calls (32-bit).
MAX_TOKENS = 2**63 - 1
MAX_CALLS = 2**31 - 1


def clamp_count(count: Any, most: int) -> int:
    """`count` as an int from 0 to `most` (0 for None, NaN, infinity, text: no count)."""
    try:
        number = int(count)
    except (TypeError, ValueError, OverflowError):  # None, NaN, infinity, text
        return 0
    return min(max(number, 0), most)


@dataclass
class JournalBatch:
    """Events and token usage of one run, written together in one transaction."""

    entries: list[JournalEntry] = field(default_factory=list)
    usage: dict[str, ModelUsage] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.entries or self.usage)

    def storable(self) -> "JournalBatch":
        """This batch with every value made storable (`dbcompat.storable_json`) and its usage
        clamped: what is written when the batch as it is was refused."""
        return JournalBatch(
            entries=[
                JournalEntry(
                    entry.event_type,
                    storable_json(entry.content),
                    storable_json(entry.metadata),
                    entry.created_at,
                )
                for entry in self.entries
            ],
            usage={str(storable_json(name)): usage.clamped() for name, usage in self.usage.items()},
        )

    def extend(self, other: "JournalBatch") -> None:
        """Append `other`'s events after this batch's, and add its usage."""
        self.entries.extend(other.entries)
        for model_name, usage in other.usage.items():
            self.usage.setdefault(model_name, ModelUsage()).add(usage)


def record_batch(*, thread_id: str, run_id: UUID, batch: JournalBatch) -> list[int]:
    """Write a run's events and add its usage, in one transaction (joining the caller's);
    returns the seqs given, in the order of `batch.entries`. Inside a transaction it makes no
    savepoint: a caller that must survive its failure wraps it in one, or rolls its whole
    transaction back."""
    with _transaction(connections[DEFAULT_DB_ALIAS]):
        seqs = record_events(thread_id=thread_id, run_id=run_id, entries=batch.entries)
        _add_usage(run_id=run_id, usage=batch.usage)
    return seqs


def _transaction(db: Any) -> contextlib.AbstractContextManager[Any]:
    """A transaction of its own on `db` (this thread's connection to the default database), or
    nothing inside the caller's (whose end is the writer's)."""
    if db.in_atomic_block:
        return contextlib.nullcontext()
    return transaction.atomic()


def record_events(*, thread_id: str, run_id: UUID, entries: list[JournalEntry]) -> list[int]:
    """Append events to the thread's journal (inside the caller's transaction, without a
    savepoint, or its own)."""
    if not entries:
        return []
    db = connections[DEFAULT_DB_ALIAS]  # once, rather than through the proxy per use
    if db.vendor == "postgresql" and len(entries) <= INSERT_EVENTS_ROWS:
        return _record_counted(db, thread_id, run_id, entries)
    with _transaction(db), hot_cursor(db) as cursor:
        cursor.execute(_allocate_seq_sql(), [thread_id, len(entries)])
        (last,) = cursor.fetchone()
        first = int(last) - len(entries) + 1
        run_key = Run._meta.pk.get_db_prep_value(run_id, db)
        for start in range(0, len(entries), INSERT_EVENTS_ROWS):
            chunk = entries[start : start + INSERT_EVENTS_ROWS]
            params = _event_rows(thread_id, run_key, first + start, chunk, db)
            cursor.execute(_insert_events_sql(len(chunk)), params)
    return list(range(first, int(last) + 1))


def _record_counted(
    db: Any, thread_id: str, run_id: UUID, entries: list[JournalEntry]
) -> list[int]:
    """`record_events` on PostgreSQL in one statement (atomic on its own outside a
    transaction; inside the caller's, the counter's row stays locked until its commit)."""
    count = len(entries)
    with hot_cursor(db) as cursor:
        cursor.execute(
            INSERT_COUNTED_EVENTS_SQL.format(journal=_journal_with_sql(count)),
            _journal_params(db, thread_id, run_id, entries),
        )
        last = max(row[0] for row in cursor.fetchall())
    return list(range(last - count + 1, last + 1))


def journal_with(
    *, thread_id: str, run_id: UUID, batch: JournalBatch
) -> tuple[str, list[Any]] | None:
    """PostgreSQL: the batch's write as `WITH` clauses (`counter AS (...), journal AS (...)`)
    and their parameters, for the caller to put before a statement of its transaction (one
    round trip for both; the events' seqs are not returned). None where the batch is written
    by `record_batch` instead: not PostgreSQL, no events, token usage to add, or more events
    than one INSERT takes."""
    db = connections[DEFAULT_DB_ALIAS]
    count = len(batch.entries)
    if db.vendor != "postgresql" or batch.usage or not 0 < count <= INSERT_EVENTS_ROWS:
        return None
    return _journal_with_sql(count), _journal_params(db, thread_id, run_id, batch.entries)


def _journal_params(
    db: Any, thread_id: str, run_id: UUID, entries: list[JournalEntry]
) -> list[Any]:
    count = len(entries)
    rows = _event_rows(thread_id, Run._meta.pk.get_db_prep_value(run_id, db), 1, entries, db)
    return [thread_id, count, count, *rows]


@functools.lru_cache(maxsize=64)
def _journal_with_sql(rows: int) -> str:
    """PostgreSQL's `WITH` clauses of a write of `rows` events with their seqs taken (the text
    made once per row count)."""
    types = [RunEvent._meta.get_field(name).db_type(connection) for name in _EVENT_COLUMNS]
    row = "(" + ", ".join(f"%s::{kind}" for kind in types) + ")"
    return JOURNAL_WITH_SQL.format(
        counters=ThreadEventCounter._meta.db_table,
        events=RunEvent._meta.db_table,
        rows=", ".join([row] * rows),
    )


@functools.cache
def _allocate_seq_sql() -> str:
    """Takes the thread's next seqs; returns the last (the row stays locked until commit)."""
    return ALLOCATE_SEQ_SQL.format(counters=ThreadEventCounter._meta.db_table)


@functools.lru_cache(maxsize=64)
def _insert_events_sql(rows: int) -> str:
    """The INSERT of `rows` events (its text made once per row count)."""
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * rows)
    return INSERT_EVENTS_SQL.format(events=RunEvent._meta.db_table, rows=values)


@functools.cache
def _json_preparers() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """`get_db_prep_save` of the events' content and metadata fields."""
    meta = RunEvent._meta
    return meta.get_field("content").get_db_prep_save, meta.get_field("metadata").get_db_prep_save


def _event_rows(
    thread_id: str, run_key: Any, first: int, entries: list[JournalEntry], db: Any
) -> list[Any]:
    """The INSERT's parameters: the events as rows numbered from `first`."""
    content, metadata = _json_preparers()
    when = db.ops.adapt_datetimefield_value
    params: list[Any] = []
    for seq, entry in enumerate(entries, start=first):
        params += [
            thread_id,
            run_key,
            seq,
            entry.event_type,
            CATEGORY_OF[entry.event_type],
            content(jsonb_storable(entry.content), db),
            metadata(jsonb_storable(entry.metadata), db),
            when(entry.created_at),
        ]
    return params


def _add_usage(*, run_id: UUID, usage: dict[str, ModelUsage]) -> None:
    if not usage:
        return
    total = ModelUsage()
    for model_usage in usage.values():
        total.add(model_usage)
    Run.objects.filter(pk=run_id).update(
        input_tokens=F("input_tokens") + total.input_tokens,
        output_tokens=F("output_tokens") + total.output_tokens,
        total_tokens=F("total_tokens") + total.total_tokens,
        llm_calls=F("llm_calls") + total.llm_calls,
    )
    sql = ADD_MODEL_USAGE_SQL.format(usage=RunModelUsage._meta.db_table)
    run_key = Run._meta.pk.get_db_prep_value(run_id, connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            sql,
            [
                (run_key, name, u.input_tokens, u.output_tokens, u.total_tokens, u.llm_calls)
                for name, u in usage.items()
            ],
        )
