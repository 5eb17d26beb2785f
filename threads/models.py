"""Threads: a conversation's record, its owner and who else may see it."""

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class Thread(models.Model):
    """A LangGraph thread: metadata, status and a snapshot of its latest state."""

    class Status(models.TextChoices):
        IDLE = "idle"
        BUSY = "busy"
        INTERRUPTED = "interrupted"
        ERROR = "error"

    thread_id = models.CharField(primary_key=True, max_length=64)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="threads"
    )
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    config = models.JSONField(default=dict, blank=True)
    values = models.JSONField(null=True, blank=True)
    interrupts = models.JSONField(default=dict, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    state_updated_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    #: Set while `POST /threads/{t}/state` writes the thread's state (a lease, for a process
    #: that dies meanwhile): no run is admitted on the thread, nor is it deleted, until then.
    state_updating_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status"]),
            models.Index(fields=["expires_at"]),
        ]
        permissions = [
            ("api_read_threads", "API scope threads:read"),
            ("api_write_threads", "API scope threads:write"),
            ("api_delete_threads", "API scope threads:delete"),
        ]

    def __str__(self) -> str:
        return self.thread_id

    def state_update_under_way(self, now: datetime | None = None) -> bool:
        """Whether a state update holds the thread (its lease, `state_updating_until`, not
        expired at `now`, by default the current time)."""
        until = self.state_updating_until
        return until is not None and until > (now or timezone.now())


class ThreadUserObjectPermission(UserObjectPermissionBase):
    """A user's permission on one thread (a direct foreign key, so listing stays one query)."""

    content_object = models.ForeignKey(Thread, on_delete=models.CASCADE)


class ThreadGroupObjectPermission(GroupObjectPermissionBase):
    """A group's permission on one thread."""

    content_object = models.ForeignKey(Thread, on_delete=models.CASCADE)
