"""Writes that PostgreSQL makes in one statement where SQLite makes two (SQLite has no INSERT or
UPDATE in a WITH): a journal write's seqs and events, a queued run's row with its thread's busy
state, and a run's end's journal with its thread's settling."""

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from runs import admission
from runs.create_serializers import parse_run_create
from runs.engine.finish import RunOutcome, ThreadSnapshot, finish_run
from runs.journal.catalog import EventType
from runs.journal.lifecycle import run_ended
from runs.journal.store import JournalBatch, JournalEntry, record_events
from runs.models import Run, RunEvent
from tests.engine_support import claim_next, make_thread, pending_run
from threads.models import Thread

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="SQLite has no INSERT or UPDATE in a WITH"
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


def test_a_queued_runs_row_and_its_threads_busy_state_are_one_statement(user: Any) -> None:
    thread = make_thread(user=user)
    Thread.objects.filter(pk=thread.pk).update(metadata={"kept": 1})
    body = {"assistant_id": "echo", "input": {"text": "x"}, "metadata": {"m": "v"}}

    with CaptureQueriesContext(connection) as queries:
        run = admission.admit_run(user=user, thread_id=thread.pk, request=parse_run_create(body))

    writes = [q["sql"] for q in queries if "runs_run" in q["sql"] or "UPDATE" in q["sql"]]
    writes = [sql for sql in writes if not sql.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1, writes
    stored = Run.objects.get(pk=run.pk)
    assert stored.status == Run.Status.PENDING and stored.metadata == {"m": "v"}
    assert stored.thread_id == thread.pk and not run._state.adding
    thread.refresh_from_db()
    assert thread.status == Thread.Status.BUSY
    assert thread.metadata == {"kept": 1, "graph_id": "echo", "assistant_id": str(run.assistant_id)}


def test_a_runs_end_writes_its_journal_with_its_threads_settling(user: Any) -> None:
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")
    (before,) = record_events(
        thread_id=thread.pk, run_id=run.pk, entries=[JournalEntry(EventType.RUN_START)]
    )
    ended = run_ended(status="success", error=None, cancel_action="", rolled_back=False)

    with CaptureQueriesContext(connection) as queries:
        assert finish_run(
            run=run,
            outcome=RunOutcome(status=Run.Status.SUCCESS),
            snapshot=ThreadSnapshot(values={"reply": "done"}),
            journal=JournalBatch(entries=[ended]),
        )

    statements = [q["sql"] for q in queries]
    journal = [sql for sql in statements if "runs_threadeventcounter" in sql]
    assert len(journal) == 1 and '"threads_thread"' in journal[0], statements
    assert not [sql for sql in statements if sql.lstrip().startswith('UPDATE "threads_thread"')]
    events = RunEvent.objects.filter(run_id=run.pk).order_by("seq")
    assert [(e.seq, e.event_type) for e in events] == [
        (before, EventType.RUN_START),
        (before + 1, EventType.RUN_END),
    ]
    thread.refresh_from_db()
    assert thread.status == Thread.Status.IDLE and thread.values == {"reply": "done"}
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUCCESS
