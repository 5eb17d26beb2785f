"""Feedback's writes against a run deleted after it was read (its thread deleted meanwhile): a
404 for the run, never a 409 saying the caller gave feedback, nor a 500."""

import uuid

import pytest
from django.utils import timezone

from feedback.models import Feedback
from feedback.services import create_feedback, put_feedback
from runs.exceptions import RunNotFound
from runs.models import Run
from threads.services import create_thread

# The foreign key is checked when the write commits (SQLite defers it): real transactions.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def deleted_run(user) -> Run:
    """A run as a request read it, deleted since."""
    thread, _ = create_thread(user=user, thread_id=str(uuid.uuid4()))
    run = Run.objects.create(
        thread=thread,
        user=user,
        assistant_id=uuid.uuid4(),
        graph_id="echo",
        status="success",
        run_at=timezone.now(),
    )
    Run.objects.filter(pk=run.pk).delete()
    return run


@pytest.mark.parametrize("write", [create_feedback, put_feedback])
def test_feedback_on_a_run_deleted_meanwhile_is_run_not_found(user, deleted_run, write) -> None:
    with pytest.raises(RunNotFound):
        write(user=user, run=deleted_run, rating=1)

    assert not Feedback.objects.exists()
