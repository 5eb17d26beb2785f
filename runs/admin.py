"""Staff browse runs by status, graph and thread, read their stream events, and cancel them."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from deerflow_site.api.errors import ServiceError
from feedback.admin import FeedbackInline
from runs.cancellation import cancel_run
from runs.journal.admin import RunModelUsageInline, journal_of
from runs.models import Run, RunStreamEvent


class RunStreamEventInline(admin.TabularInline):
    """The stored stream events of a resumable run, read-only."""

    model = RunStreamEvent
    fields = ("seq", "event", "data", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("seq",)
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs (the queue), with cancel actions that go through the same service as the API."""

    list_display = (
        "run_id",
        "thread",
        "graph_id",
        "status",
        "attempt",
        "worker_id",
        "created_at",
        "ended_at",
        "total_tokens",
    )
    list_filter = ("status", "graph_id", "multitask_strategy", "rolled_back", "created_at")
    search_fields = ("run_id", "thread__thread_id", "user__username", "worker_id")
    raw_id_fields = ("thread", "user")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = (RunModelUsageInline, FeedbackInline, RunStreamEventInline)
    readonly_fields = [*(field.name for field in Run._meta.fields), "journal"]
    actions = ("cancel_interrupt", "cancel_rollback")

    journal = staticmethod(journal_of)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are admitted through the API, which applies the thread's rules

    @admin.action(description="Cancel (interrupt) the selected active runs", permissions=["cancel"])
    def cancel_interrupt(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._cancel(request, queryset, Run.CancelAction.INTERRUPT)

    @admin.action(description="Cancel (rollback) the selected active runs", permissions=["cancel"])
    def cancel_rollback(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._cancel(request, queryset, Run.CancelAction.ROLLBACK)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        """The cancel actions need `runs.cancel_run`."""
        return request.user.has_perm("runs.cancel_run")

    def _cancel(self, request: HttpRequest, queryset: QuerySet[Run], action: str) -> None:

        cancelled = 0
        for run in queryset.active():
            try:
                cancel_run(run=run, action=action)
            except ServiceError:  # it ended meanwhile
                continue
            cancelled += 1
        self.message_user(request, f"{action}: {cancelled} run(s) cancelled.", messages.SUCCESS)
