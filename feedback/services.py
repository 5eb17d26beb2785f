"""Writes of feedback: one per user per run, kept so by the database's unique constraint."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from feedback.exceptions import FeedbackExists, FeedbackNotFound
from feedback.models import Feedback
from runs import sql
from runs.exceptions import RunNotFound
from runs.models import Run

#: A PUT that loses a race with a concurrent create tries again this many times.
UPSERT_ATTEMPTS = 3


def create_feedback(
    *, user: Any, run: Run, rating: int, comment: str = "", message_id: str = ""
) -> Feedback:
    """The caller's new feedback on `run`; raises FeedbackExists (409) if they gave one,
    RunNotFound (404) if the run was deleted meanwhile (with its thread, say).

    The unique constraint decides between concurrent creates: one wins, the others get 409.
    """
    try:
        with transaction.atomic():
            if not sql.hold_thread_key(run.thread_id):  # the thread first, as its deletion
                raise RunNotFound()
            return Feedback.objects.create(
                run=run,
                thread_id=run.thread_id,
                user=user,
                rating=rating,
                comment=comment,
                message_id=message_id,
            )
    except IntegrityError:
        # The unique constraint, or the run's foreign key: a run deleted since it was read.
        if not Run.objects.filter(pk=run.pk).exists():
            raise RunNotFound() from None
        raise FeedbackExists() from None


def put_feedback(
    *, user: Any, run: Run, rating: int, comment: str = "", message_id: str = ""
) -> Feedback:
    """Create or replace the caller's feedback on `run` (rating, comment and message_id)."""
    for _ in range(UPSERT_ATTEMPTS):
        mine = Feedback.objects.filter(user=user, run=run)
        # One transaction: the row the update changed stays until it is read back (a DELETE
        # between the two made the read a DoesNotExist, a 500).
        with transaction.atomic():
            changed = mine.update(
                rating=rating, comment=comment, message_id=message_id, updated_at=timezone.now()
            )
            if changed:
                return mine.get()
        try:
            return create_feedback(
                user=user, run=run, rating=rating, comment=comment, message_id=message_id
            )
        except FeedbackExists:  # created concurrently: update that one
            continue
    raise FeedbackExists()


def delete_feedback(*, user: Any, run: Run) -> None:
    """Delete the caller's feedback on `run`; raises FeedbackNotFound (404) if there is none."""
    deleted, _ = Feedback.objects.filter(user=user, run=run).delete()
    if not deleted:
        raise FeedbackNotFound()
