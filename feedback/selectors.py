"""Reads of feedback; the run or thread is permission-checked by the runs/threads selectors."""

from typing import Any

from django.db.models import Count, Q

from deerflow_site.api.ids import validate_thread_id
from feedback.exceptions import FeedbackNotFound
from feedback.models import Feedback
from runs.models import Run
from threads.selectors import get_thread


def feedback_of(*, user: Any, run: Run) -> Feedback:
    """The caller's feedback on `run`; raises FeedbackNotFound (404) if there is none."""
    found = Feedback.objects.filter(user=user, run=run).first()
    if found is None:
        raise FeedbackNotFound()
    return found


def feedback_stats(*, run: Run) -> dict[str, Any]:
    """`{run_id, total, positive, negative}` over every user's feedback on `run`."""
    counts = Feedback.objects.filter(run=run).aggregate(
        total=Count("pk"),
        positive=Count("pk", filter=Q(rating=Feedback.Rating.POSITIVE)),
        negative=Count("pk", filter=Q(rating=Feedback.Rating.NEGATIVE)),
    )
    return {"run_id": run.pk, **counts}


def thread_feedback(*, user: Any, thread_id: str) -> list[Feedback]:
    """The caller's feedback on every run of a thread they may view, oldest first (404 if
    the thread is not visible)."""
    thread = get_thread(user=user, thread_id=validate_thread_id(thread_id))
    return list(Feedback.objects.filter(thread=thread, user=user).order_by("created_at"))
