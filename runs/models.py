"""Runs: the run queue is this table; stream events of resumable runs and every run's journal
(events, token usage by model) are kept beside it."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from runs.journal.catalog import EventCategory, EventType
from threads.models import Thread

#: A pending or running run: the condition of the partial indexes of active runs. The hot path's
#: statements repeat it in this form (`runs.sql.ACTIVE`), which SQLite needs to see that they may
#: use those indexes: they hold the few active runs, whatever the history of a thread or a user.
ACTIVE_RUN = Q(status="pending") | Q(status="running")


class RunQuerySet(models.QuerySet["Run"]):
    def active(self) -> "RunQuerySet":
        """Runs still pending or running: a thread with one is busy."""
        return self.filter(status__in=Run.ACTIVE_STATUSES)


class Run(models.Model):
    """One execution of a graph on a thread; pending rows are the queue."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCESS = "success"
        ERROR = "error"
        TIMEOUT = "timeout"
        INTERRUPTED = "interrupted"

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)

    class MultitaskStrategy(models.TextChoices):
        REJECT = "reject"
        ROLLBACK = "rollback"
        INTERRUPT = "interrupt"
        ENQUEUE = "enqueue"

    class CancelAction(models.TextChoices):
        """What a user's cancel does: stop the run, or also delete the checkpoints it wrote."""

        INTERRUPT = "interrupt"
        ROLLBACK = "rollback"

    class WebhookStatus(models.TextChoices):
        """How the run's webhook went; blank: the run has none, or it was not sent yet."""

        DELIVERED = "delivered"
        FAILED = "failed"

    class OnCompletion(models.TextChoices):
        """What becomes of the thread once the run ended (stateless runs: `delete`)."""

        DELETE = "delete"
        KEEP = "keep"

    class OnDisconnect(models.TextChoices):
        """What a client that goes away from a create-and-stream or wait does to the run."""

        CANCEL = "cancel"
        CONTINUE = "continue"

    run_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of their own: runs_thread_created_idx and runs_user_created_idx start with them.
    thread = models.ForeignKey(
        Thread, on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, db_index=False
    )
    assistant_id = models.UUIDField()
    graph_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    metadata = models.JSONField(default=dict, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    multitask_strategy = models.CharField(
        max_length=16, choices=MultitaskStrategy.choices, default=MultitaskStrategy.REJECT
    )
    on_completion = models.CharField(
        max_length=8, choices=OnCompletion.choices, default=OnCompletion.KEEP
    )
    on_disconnect = models.CharField(
        max_length=8, choices=OnDisconnect.choices, default=OnDisconnect.CANCEL
    )
    resumable = models.BooleanField(default=False)
    # The queue: a pending run may start once `run_at` has passed (after_seconds).
    run_at = models.DateTimeField()
    attempt = models.PositiveIntegerField(default=0)
    worker_id = models.CharField(max_length=128, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_action = models.CharField(
        max_length=16, choices=CancelAction.choices, blank=True, default=""
    )
    rolled_back = models.BooleanField(default=False)
    error = models.JSONField(null=True, blank=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The webhook's outcome never changes the run's: it is recorded here for staff to see.
    webhook_status = models.CharField(
        max_length=16, choices=WebhookStatus.choices, blank=True, default=""
    )
    webhook_detail = models.CharField(max_length=500, blank=True, default="")

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Exactly one run of a thread executes at a time, across every process.
            models.UniqueConstraint(
                fields=["thread"],
                condition=Q(status="running"),
                name="runs_one_running_per_thread",
            ),
        ]
        indexes = [
            # The queue, the leases and the cleanup read partial indexes: a finished run leaves
            # the first two, and enters the last only as it ends, so that inserting a run and
            # ending it write fewer index pages (each transaction writes every page it changes).
            models.Index(fields=["run_at"], condition=Q(status="pending"), name="runs_queue_idx"),
            models.Index(fields=["thread", "-created_at"], name="runs_thread_created_idx"),
            models.Index(
                fields=["lease_expires_at"], condition=Q(status="running"), name="runs_lease_idx"
            ),
            # cleanup: finished runs past their retention
            models.Index(
                fields=["ended_at"], condition=Q(ended_at__isnull=False), name="runs_ended_idx"
            ),
            # the admin's run list, newest first, and each of its filters
            models.Index(fields=["-created_at"], name="runs_created_idx"),
            models.Index(fields=["status", "-created_at"], name="runs_status_created_idx"),
            models.Index(fields=["graph_id", "-created_at"], name="runs_graph_created_idx"),
            models.Index(fields=["user", "-created_at"], name="runs_user_created_idx"),
            # A thread's and a user's active runs: admission's in-flight runs and quota, the
            # thread's status at a run's end, the queue's order per thread and its fair claim.
            models.Index(
                fields=["thread", "created_at"], condition=ACTIVE_RUN, name="runs_active_thread_idx"
            ),
            models.Index(fields=["user"], condition=ACTIVE_RUN, name="runs_active_user_idx"),
        ]
        permissions = [
            ("api_create_runs", "API scope runs:create"),
            ("api_read_runs", "API scope runs:read"),
            ("api_cancel_runs", "API scope runs:cancel"),
            # The admin's cancel actions (viewing runs in the admin is not enough).
            ("cancel_run", "Can cancel run"),
            ("api_read_assistants", "API scope assistants:read"),
        ]

    def __str__(self) -> str:
        return str(self.run_id)

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class RunStreamEvent(models.Model):
    """One SSE event of a resumable run, kept for replay until the retention period ends."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="stream_events")
    # 64-bit: out-of-band events (a reaper's, a cancel's) use the clock in milliseconds as id.
    seq = models.PositiveBigIntegerField()
    event = models.CharField(max_length=255)
    data = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="runs_stream_event_seq_unique")
        ]
        indexes = [models.Index(fields=["created_at"], name="runs_stream_event_created_idx")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.event}"


class ThreadEventCounter(models.Model):
    """The last journal `seq` a thread has given out: writers take numbers by updating this row,
    whose lock orders them on one thread across processes."""

    thread = models.OneToOneField(
        Thread, on_delete=models.CASCADE, primary_key=True, related_name="event_counter"
    )
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.thread_id}: {self.last_seq}"


class RunEvent(models.Model):
    """One event of a run's journal; `seq` is unique and increasing per thread."""

    # No index of their own: runs_event_thread_seq_unique and runs_event_run_type_idx start
    # with them (every run writes its events: two indexes fewer to update per event).
    thread = models.ForeignKey(
        Thread, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveBigIntegerField()
    event_type = models.CharField(max_length=32, choices=EventType.choices)
    category = models.CharField(max_length=16, choices=EventCategory.choices)
    content = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["thread", "seq"], name="runs_event_thread_seq_unique")
        ]
        indexes = [
            # the chat history pages: a thread's messages by seq
            models.Index(fields=["thread", "category", "seq"], name="runs_event_thread_cat_idx"),
            # a run's events, and the last AI message of each run
            models.Index(fields=["run", "event_type", "seq"], name="runs_event_run_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.thread_id}#{self.seq} {self.event_type}"


class RunModelUsage(models.Model):
    """The tokens and calls of one chat model in one run (the Run holds the totals)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="model_usage")
    model_name = models.CharField(max_length=255)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "model_name"], name="runs_model_usage_unique")
        ]

    def __str__(self) -> str:
        # Shown as the row's title on its run's page: the run goes without saying there.
        calls = "call" if self.llm_calls == 1 else "calls"
        return (
            f"{self.model_name}: {self.total_tokens} tokens ({self.input_tokens} in, "
            f"{self.output_tokens} out), {self.llm_calls} {calls}"
        )


class WorkerHeartbeat(models.Model):
    """A run worker's last sign of life, renewed every third of a lease: the workers online."""

    worker_id = models.CharField(primary_key=True, max_length=128)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    concurrency = models.PositiveIntegerField()
    running = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.worker_id
