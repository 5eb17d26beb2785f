"""The run's statements read its thread's and user's active runs, never their whole history.

Admission (the user's quota, the thread's in-flight runs), the claim (the queue's order per
thread, the fair turn of each user) and the end of a run (the thread's status) each ask about
the few pending or running runs of a thread or a user. Read through an index of every run of
that thread or user, each of them grows with the history: a user with thousands of finished
runs made every claim and every admission scan them all. SQLite's own plan of each statement,
as it runs (the same text and parameters), shows which index it reads.
"""

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from runs import admission
from runs.create_serializers import parse_run_create
from runs.engine import queue
from runs.engine.finish import RunOutcome, ThreadSnapshot, finish_run
from runs.models import Run
from tests.engine_support import make_thread, pending_run

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "sqlite",
        reason="SQLite's EXPLAIN QUERY PLAN; PostgreSQL plans by its statistics",
    ),
]

#: Indexes of every run of a thread or a user, whatever its status.
HISTORY_INDEXES = ("runs_thread_created_idx", "runs_user_created_idx")


class Statements:
    """The statements run on the default connection, with their parameters."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, Any]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not many:
            self.executed.append((sql, params))
        return execute(sql, params, many, context)

    def plans(self) -> dict[str, list[str]]:
        """Each statement on the runs table: the plan SQLite makes of it."""
        plans = {}
        with connection.cursor() as cursor:
            for sql, params in self.executed:
                if '"runs_run"' not in sql and "runs_run " not in sql:
                    continue
                cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
                plans[sql] = [row[-1] for row in cursor.fetchall()]
        return plans


def _history(user: Any, thread: Any, count: int = 3) -> None:
    for _ in range(count):
        Run.objects.filter(pk=pending_run(thread=thread, user=user).pk).update(
            status=Run.Status.SUCCESS
        )


@override_settings(MAX_ACTIVE_RUNS_PER_USER=10)
def test_admission_claim_and_finish_read_only_active_runs(user: Any) -> None:
    threads = [make_thread(user=user) for _ in range(2)]
    for thread in threads:
        _history(user, thread)
    statements = Statements()
    body = {"assistant_id": "echo", "input": {"text": "x"}, "multitask_strategy": "enqueue"}
    with connection.execute_wrapper(statements):
        for thread in threads:
            admission.admit_run(user=user, thread_id=thread.pk, request=parse_run_create(body))
        admission.admit_run(user=user, thread_id=threads[0].pk, request=parse_run_create(body))
        # a direct start's one read of the thread's active runs and of the queue
        assert queue.thread_active_and_any_eligible(threads[1].pk, timezone.now()) == (True, True)
        assert queue.idle() is None
        claimed = queue.claim_runs(worker_id="w1", limit=5, eligible=True).runs
        assert len(claimed) == 2
        for run in claimed:
            outcome = RunOutcome(status=Run.Status.SUCCESS)
            assert finish_run(run=run, outcome=outcome, snapshot=ThreadSnapshot(values={}))

    plans = statements.plans()
    assert len(plans) >= 8  # quota, in-flight, insert, eligibility, claim, end, thread status,
    # the direct start's read
    for sql, plan in plans.items():
        for step in plan:
            assert "SCAN" not in step or "runs_run" not in step, (sql, plan)
            assert not any(index in step for index in HISTORY_INDEXES), (sql, plan)


def test_the_active_run_indexes_serve_the_quota_and_the_fair_claim(user: Any) -> None:
    """The two statements that count a user's runs read the partial index of active runs."""
    thread = make_thread(user=user)
    _history(user, thread)
    pending_run(thread=thread, user=user)
    statements = Statements()
    with connection.execute_wrapper(statements), override_settings(MAX_ACTIVE_RUNS_PER_USER=10):
        admission._check_active_runs_quota(user)
        queue.claim_runs(worker_id="w1", limit=1)
    used = [step for plan in statements.plans().values() for step in plan]
    assert sum("runs_active_user_idx" in step for step in used) >= 2, used
