"""The journal's writes on PostgreSQL: a write's seqs and its events in one statement."""

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from runs.journal.catalog import EventType
from runs.journal.store import JournalEntry, record_events
from runs.models import RunEvent
from tests.engine_support import make_thread, pending_run

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="SQLite has no INSERT in a WITH: two statements"
    ),
    pytest.mark.django_db,
]


def test_a_write_takes_its_seqs_and_inserts_its_events_in_one_statement(user: Any) -> None:
    thread = make_thread(user=user)
    run = pending_run(thread=thread, user=user)
    (first,) = record_events(
        thread_id=thread.pk, run_id=run.pk, entries=[JournalEntry(EventType.RUN_START)]
    )
    entries = [
        JournalEntry(EventType.HUMAN_INPUT, content=None, metadata={}),  # a column of NULLs
        JournalEntry(EventType.AI_RESPONSE, content={"text": "hi", "n": [1, 2]}),
        JournalEntry(EventType.RUN_END, metadata={"status": "success"}),
    ]
    with CaptureQueriesContext(connection) as queries:
        seqs = record_events(thread_id=thread.pk, run_id=run.pk, entries=entries)
    assert len(queries) == 1, [q["sql"][:60] for q in queries]
    assert seqs == [first + 1, first + 2, first + 3]

    # Inside a transaction, as the run's end writes them: the same statement, the next seqs.
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        again = record_events(thread_id=thread.pk, run_id=run.pk, entries=entries[:1])
    assert len(queries) == 1
    assert again == [first + 4]

    stored = RunEvent.objects.filter(run_id=run.pk).order_by("seq")
    assert [(e.seq, e.event_type, e.content, e.metadata, e.thread_id) for e in stored] == [
        (first, EventType.RUN_START, None, {}, thread.pk),
        (first + 1, EventType.HUMAN_INPUT, None, {}, thread.pk),
        (first + 2, EventType.AI_RESPONSE, {"text": "hi", "n": [1, 2]}, {}, thread.pk),
        (first + 3, EventType.RUN_END, None, {"status": "success"}, thread.pk),
        (first + 4, EventType.HUMAN_INPUT, None, {}, thread.pk),
    ]
    assert [e.created_at for e in stored][1:4] == [e.created_at for e in entries]
