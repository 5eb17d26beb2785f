"""Feedback's writes against a run deleted after it was read (its thread deleted meanwhile): a
404 for the run, never a 409 saying the caller gave feedback, nor a 500."""

import threading
import uuid
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from feedback.models import Feedback
from feedback.services import create_feedback, delete_feedback, put_feedback
from runs.exceptions import RunNotFound
from runs.models import Run
from threads.services import create_thread

# The foreign key is checked when the write commits (SQLite defers it): real transactions.
pytestmark = pytest.mark.django_db(transaction=True)


def _finished_run(user: Any) -> Run:
    """A successful run on a new thread of `user`'s."""
    thread, _ = create_thread(user=user, thread_id=str(uuid.uuid4()))
    return Run.objects.create(
        thread=thread,
        user=user,
        assistant_id=uuid.uuid4(),
        graph_id="echo",
        status="success",
        run_at=timezone.now(),
    )


@pytest.fixture
def deleted_run(user) -> Run:
    """A run as a request read it, deleted since."""
    run = _finished_run(user)
    Run.objects.filter(pk=run.pk).delete()
    return run


@pytest.mark.parametrize("write", [create_feedback, put_feedback])
def test_feedback_on_a_run_deleted_meanwhile_is_run_not_found(user, deleted_run, write) -> None:
    with pytest.raises(RunNotFound):
        write(user=user, run=deleted_run, rating=1)

    assert not Feedback.objects.exists()


def test_a_put_whose_feedback_is_deleted_right_after_its_update_answers_it(user) -> None:
    # The DELETE goes in on another connection the moment the PUT's UPDATE has run, and is
    # given a second to land: without one transaction around them, it lands before the PUT
    # reads its row back (DoesNotExist, a 500); with it, it waits for the PUT's commit.
    run = _finished_run(user)
    create_feedback(user=user, run=run, rating=1)
    deleting: list[threading.Thread] = []

    def delete_on_another_connection() -> None:
        try:
            delete_feedback(user=user, run=run)
        finally:
            connections.close_all()

    def after_the_update(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("UPDATE") and not deleting:
            deleting.append(threading.Thread(target=delete_on_another_connection))
            deleting[0].start()
            deleting[0].join(timeout=1)  # lands at once unless the PUT's transaction holds it
        return result

    with connection.execute_wrapper(after_the_update):
        feedback = put_feedback(user=user, run=run, rating=-1)

    deleting[0].join()
    assert feedback.rating == -1
    assert not Feedback.objects.exists()  # the DELETE went in after the PUT
