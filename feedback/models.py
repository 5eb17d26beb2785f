"""Feedback on runs: one thumbs up or down per user per run, with an optional comment."""

import uuid

from django.conf import settings
from django.db import models

from runs.models import Run
from threads.models import Thread


class Feedback(models.Model):
    """A user's rating of a run (+1 or -1), optionally on one of its messages."""

    class Rating(models.IntegerChoices):
        POSITIVE = 1
        NEGATIVE = -1

    feedback_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="feedback")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback"
    )
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True, default="")
    message_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One feedback per user per run: concurrent creates lose on this, never duplicate.
            models.UniqueConstraint(fields=["user", "run"], name="feedback_one_per_user_run"),
            models.CheckConstraint(
                condition=models.Q(rating__in=(1, -1)), name="feedback_rating_plus_minus_one"
            ),
        ]
        indexes = [
            models.Index(fields=["run", "rating"], name="feedback_run_rating_idx"),
            models.Index(fields=["thread", "user"], name="feedback_thread_user_idx"),
            models.Index(fields=["-created_at"], name="feedback_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.run_id}: {self.rating:+d}"
