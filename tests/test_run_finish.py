"""The end of a run in the database (runs/engine/finish.py): the run's final status, its
journal's last events and its thread's status, in one transaction."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.engine.finish import RunOutcome, ThreadSnapshot, finish_run, settle_thread
from runs.journal.catalog import EventType
from runs.journal.lifecycle import run_ended
from runs.journal.store import JournalBatch, JournalEntry, ModelUsage, record_events
from runs.models import Run, RunEvent
from tests.engine_support import claim_next, make_thread, pending_run
from threads.models import Thread

pytestmark = pytest.mark.django_db


def _finish(run: Run, *, status: str = Run.Status.SUCCESS, **snapshot: Any) -> bool:
    return finish_run(
        run=run,
        outcome=RunOutcome(status=status),
        snapshot=ThreadSnapshot(**snapshot),
        journal=JournalBatch(
            entries=[run_ended(status=status, error=None, cancel_action="", rolled_back=False)]
        ),
    )


def test_a_thread_with_a_run_still_queued_stays_busy_when_a_run_ends(user: Any) -> None:
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    queued = pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")

    assert _finish(run, values={"reply": "done"})

    thread.refresh_from_db()
    assert thread.status == Thread.Status.BUSY
    assert thread.values == {"reply": "done"}  # the state is the ended run's all the same
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUCCESS
    assert RunEvent.objects.filter(run=run, event_type="run.end").count() == 1

    Run.objects.filter(pk=queued.pk).update(status=Run.Status.INTERRUPTED)
    settle_thread(thread_id=thread.pk, failed=False)
    thread.refresh_from_db()
    assert thread.status == Thread.Status.IDLE


@pytest.mark.parametrize(
    ("status", "snapshot", "thread_status"),
    [
        (Run.Status.SUCCESS, {}, Thread.Status.IDLE),
        (Run.Status.SUCCESS, {"waiting": True}, Thread.Status.INTERRUPTED),
        (Run.Status.ERROR, {}, Thread.Status.ERROR),
    ],
)
def test_the_thread_of_a_run_that_ends_alone_takes_the_runs_outcome(
    user: Any, status: str, snapshot: dict[str, Any], thread_status: str
) -> None:
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")

    assert _finish(run, status=status, **snapshot)

    thread.refresh_from_db()
    assert thread.status == thread_status


def test_a_run_no_longer_under_its_workers_claim_changes_nothing(user: Any) -> None:
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")
    Run.objects.filter(pk=run.pk).update(status=Run.Status.ERROR)  # reaped meanwhile

    assert not _finish(run)

    assert not RunEvent.objects.filter(run=run).exists()
    thread.refresh_from_db()
    assert thread.status == Thread.Status.BUSY


def test_the_end_of_a_run_locks_its_thread_row_where_rows_are_locked(user: Any) -> None:
    # PostgreSQL: the thread's row, locked before the count of its active runs. SQLite's
    # transaction holds the write lock from its BEGIN, and a snapshot gives the interrupts.
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")

    with CaptureQueriesContext(connection) as queries:
        assert _finish(run, values={"reply": "done"})

    thread_reads = [
        q["sql"] for q in queries if q["sql"].startswith("SELECT") and "threads_thread" in q["sql"]
    ]
    assert len(thread_reads) == (1 if connection.features.has_select_for_update else 0)
    thread.refresh_from_db()
    assert thread.status == Thread.Status.IDLE and thread.values == {"reply": "done"}


def test_a_journal_that_cannot_be_written_does_not_keep_its_run_from_ending(
    user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The journal's INSERT fails in the database (a statement that errors on both databases,
    # and aborts PostgreSQL's transaction): the end is made again without the journal.
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")

    def failing_journal(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "INSERT INTO runs_runevent" in sql:  # alone, or in PostgreSQL's WITH counter
            return execute("SELECT * FROM no_such_table", None, many, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(failing_journal):
        assert _finish(run, values={"reply": "done"})

    assert "the end of its journal could not be written" in caplog.text
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUCCESS
    assert not RunEvent.objects.filter(run=run).exists()
    thread.refresh_from_db()
    assert thread.status == Thread.Status.IDLE and thread.values == {"reply": "done"}


def test_the_end_of_a_run_writes_its_journal_without_a_savepoint(user: Any) -> None:
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")

    # The test's own transaction makes the end's transaction a savepoint: that one only.
    own = 1 if connection.in_atomic_block else 0
    with CaptureQueriesContext(connection) as queries:
        assert _finish(run, values={"reply": "done"})

    assert sum(q["sql"].startswith("SAVEPOINT") for q in queries) == own
    events = list(RunEvent.objects.filter(run=run).values_list("event_type", flat=True))
    assert events == ["run.end"]


def test_a_journal_value_the_database_refuses_leaves_the_end_whole_and_the_seqs_gapless(
    user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # NaN is no JSON: SQLite's JSON check and PostgreSQL's jsonb both refuse it, after the
    # journal took its seqs (a failed statement aborts PostgreSQL's transaction).
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")
    [before] = record_events(
        thread_id=thread.pk, run_id=run.pk, entries=[JournalEntry(EventType.RUN_START)]
    )
    refused = JournalBatch(
        entries=[
            JournalEntry(EventType.TOOL_RESULT, content={"score": float("nan")}),
            run_ended(status=Run.Status.SUCCESS, error=None, cancel_action="", rolled_back=False),
        ]
    )

    assert finish_run(
        run=run,
        outcome=RunOutcome(status=Run.Status.SUCCESS),
        snapshot=ThreadSnapshot(values={"reply": "done"}),
        journal=refused,
    )

    assert "its end could not be written as it was" in caplog.text
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUCCESS
    thread.refresh_from_db()
    assert thread.status == Thread.Status.IDLE and thread.values == {"reply": "done"}
    [after] = record_events(
        thread_id=thread.pk, run_id=run.pk, entries=[JournalEntry(EventType.RUN_END)]
    )
    # The refused batch's seqs were given back, and taken again by the batch made storable
    # (NaN stored as null).
    assert after == before + 3
    seqs = list(RunEvent.objects.filter(thread_id=thread.pk).values_list("seq", flat=True))
    assert sorted(seqs) == [before, before + 1, before + 2, after]
    assert RunEvent.objects.get(seq=before + 1, thread_id=thread.pk).content == {"score": None}


class _Opaque:
    """No JSON encoder knows it."""


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": [value]}
    return value


# What a graph or a model may hand the end of its run, that no database column can hold as
# it is: each must leave the run ended, its final status committed.
UNSTORABLE = {
    "a token count beyond 64 bits": {"usage": ModelUsage(input_tokens=2**70, total_tokens=2**70)},
    "a negative token count": {"usage": ModelUsage(output_tokens=-5)},
    "NaN and infinity in the state": {"values": {"score": float("nan"), "top": float("inf")}},
    "NUL in the state and the journal": {"values": {"te\x00xt": "a\x00b"}, "content": "x\x00"},
    "a lone surrogate": {"values": {"text": "\ud800"}, "content": {"t": "\udfff"}},
    "values nested too deep": {"values": _nested(3000), "content": _nested(3000)},
    "a value no JSON encoder knows": {"values": {"o": _Opaque()}, "content": {(1, 2): _Opaque()}},
}


@pytest.mark.parametrize("case", list(UNSTORABLE), ids=list(UNSTORABLE))
def test_no_value_from_a_graph_keeps_its_run_from_ending(user: Any, case: str) -> None:
    given = UNSTORABLE[case]
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    run = claim_next(worker_id="w1")
    journal = JournalBatch(
        entries=[
            JournalEntry(EventType.TOOL_RESULT, content=given.get("content", "ok")),
            run_ended(status=Run.Status.SUCCESS, error=None, cancel_action="", rolled_back=False),
        ]
    )
    if "usage" in given:
        journal.usage["model"] = given["usage"]

    assert finish_run(
        run=run,
        outcome=RunOutcome(status=Run.Status.SUCCESS),
        snapshot=ThreadSnapshot(values=given.get("values", {"reply": "done"})),
        journal=journal,
    )

    ended = Run.objects.get(pk=run.pk)
    assert ended.status == Run.Status.SUCCESS
    thread.refresh_from_db()
    assert thread.status == Thread.Status.IDLE
    # What could be kept is: the journal's events, with the values made storable, and the
    # token counts clamped to what the columns hold.
    assert list(RunEvent.objects.filter(run=run).values_list("event_type", flat=True)) == [
        "llm.tool.result",
        "run.end",
    ]
    assert 0 <= ended.input_tokens < 2**63 and 0 <= ended.output_tokens < 2**63
