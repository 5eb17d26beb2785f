"""Admission reads what it decides on: the thread's metadata and rights, never its state, which
grows with the conversation (every message of a chat is in `values`)."""

from typing import Any

import pytest
from django.db import connection

from runs import admission
from runs.create_serializers import parse_run_create
from tests.engine_support import make_thread
from threads.models import Thread

pytestmark = pytest.mark.django_db

BODY = {"assistant_id": "echo", "input": {"text": "x"}}


def test_admission_leaves_the_threads_state_unread(user: Any) -> None:
    thread = make_thread(user=user)
    state = {"messages": [{"type": "ai", "content": "y" * 1000}] * 50}
    Thread.objects.filter(pk=thread.pk).update(values=state, interrupts={"t": [{"id": "i"}]})
    selects: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("SELECT") and "threads_thread" in sql:
            selects.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        run = admission.admit_run(user=user, thread_id=thread.pk, request=parse_run_create(BODY))

    assert selects, "admission reads the thread with the user's rights"
    assert all('"values"' not in sql and '"interrupts"' not in sql for sql in selects), selects
    assert run.thread.get_deferred_fields() >= {"values", "interrupts"}
    assert run.thread.metadata["graph_id"] == "echo"
    assert run.thread.values == state  # still there when asked for: read then
