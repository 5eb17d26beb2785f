"""Staff's run console: runs listed and filtered, each run's page read-only (its request with
secrets redacted, outcome, timings, worker, journal, feedback, webhook), and actions that go
through the same services as the API (cancel, re-run, delete), each needing its permission."""

import json
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from deerflow_site.admin_deletion import DeletesThroughService
from deerflow_site.admin_lists import EstimatedCountPaginator, ThreadFilter, UsernameFilter
from deerflow_site.errors import DomainError
from feedback.admin import FeedbackInline
from runs.cancellation import cancel_run
from runs.engine import graph_specs
from runs.journal.admin import RunModelUsageInline, journal_of
from runs.models import Run, RunStreamEvent
from runs.serializers import public_kwargs

#: Stored stream events shown on a run's page (the first ones, by id).
RUN_PAGE_STREAM_EVENTS = 100
#: How long a cancel action waits for the runs' workers to stop them (seconds), so that the
#: list it returns to shows them stopped.
CANCEL_WAIT_SECONDS = 10.0


class RunStreamEventInline(admin.TabularInline):
    """The first stored stream events of a resumable run, read-only."""

    model = RunStreamEvent
    fields = ("seq", "event", "data", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("seq",)
    show_change_link = False
    verbose_name_plural = f"stored stream events (the first {RUN_PAGE_STREAM_EVENTS})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[RunStreamEvent]:
        # A formset filters its queryset by the run: the bound goes in a subquery.
        first = RunStreamEvent.objects.filter(run_id=self._run_id(request)).order_by("seq")
        bounded = first.values("pk")[:RUN_PAGE_STREAM_EVENTS]
        return super().get_queryset(request).filter(pk__in=bounded)

    @staticmethod
    def _run_id(request: HttpRequest) -> Any:
        return request.resolver_match.kwargs.get("object_id") if request.resolver_match else None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GraphFilter(admin.SimpleListFilter):
    """The registered graphs (no scan of the runs for their distinct values)."""

    title = "graph"
    parameter_name = "graph_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(graph_id, graph_id) for graph_id in sorted(graph_specs())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run] | None:
        return queryset.filter(graph_id=self.value()) if self.value() else None


@admin.register(Run)
class RunAdmin(DeletesThroughService):
    """Runs (the queue), newest first."""

    list_display = (
        "run_id",
        "status",
        "graph_id",
        "thread_link",
        "owner",
        "created_at",
        "duration",
        "total_tokens",
    )
    list_filter = ("status", GraphFilter, UsernameFilter, ThreadFilter, "created_at")
    list_select_related = ("user",)
    search_fields = ("run_id",)  # shows the box; get_search_results does the exact matches
    search_help_text = "An exact run id, thread id or owner's username."
    ordering = ("-created_at",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    inlines = (RunModelUsageInline, FeedbackInline, RunStreamEventInline)
    actions = ("cancel_interrupt", "cancel_rollback", "rerun", "delete_selected")
    fieldsets = (
        (
            None,
            {"fields": ("run_id", "thread_link", "owner", "graph_id", "assistant_id", "status")},
        ),
        ("Request", {"fields": ("request", "metadata", "multitask_strategy", "on_completion")}),
        (
            "Outcome",
            {
                "fields": (
                    "error",
                    "cancel_action",
                    "rolled_back",
                    ("input_tokens", "output_tokens", "total_tokens"),
                    ("webhook_status", "webhook_detail"),
                )
            },
        ),
        (
            "Timings and worker",
            {
                "fields": (
                    ("created_at", "run_at", "started_at", "ended_at"),
                    "duration",
                    ("worker_id", "attempt", "lease_expires_at"),
                )
            },
        ),
        ("Journal", {"fields": ("journal",)}),
    )
    readonly_fields = (
        *(field.name for field in Run._meta.fields),
        "thread_link",
        "owner",
        "request",
        "duration",
        "journal",
    )

    journal = staticmethod(journal_of)

    # --- Columns and fields ----------------------------------------------------------------

    @admin.display(description="thread", ordering="thread_id")
    def thread_link(self, run: Run) -> str:
        url = reverse("admin:threads_thread_change", args=[run.thread_id])
        return format_html('<a href="{}">{}</a>', url, run.thread_id)

    @admin.display(description="owner", ordering="user__username")
    def owner(self, run: Run) -> str:
        return run.user.username if run.user else "—"

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        if run.started_at is None:
            return "—"
        seconds = ((run.ended_at or run.started_at) - run.started_at) / timedelta(seconds=1)
        return f"{seconds:.1f} s" if run.ended_at else "running"

    @admin.display(description="request (secrets redacted)")
    def request(self, run: Run) -> str:
        shown = json.dumps(public_kwargs(run.kwargs), indent=2, default=str)
        return format_html("<pre>{}</pre>", shown)

    # --- Search ----------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Run], search_term: str
    ) -> tuple[QuerySet[Run], bool]:
        """Exact, indexed matches: a run id, a thread id or an owner's username."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(thread_id=term) | Q(user__username=term)
        try:
            match |= Q(run_id=UUID(term))
        except ValueError:
            pass
        return queryset.filter(match), False

    # --- Permissions -----------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are admitted through the API, which applies the thread's rules

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a run is a record: read-only, acted on by the actions

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        """The cancel actions need `runs.cancel_run` (viewing runs is not enough)."""
        return request.user.has_perm("runs.cancel_run")

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        """Re-running makes a run: `runs.add_run`."""
        return request.user.has_perm("runs.add_run")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        # Read-only: neither Save nor Delete on the page (deleting goes by the list's action).
        extra_context = {**(extra_context or {}), "show_delete": False}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- Actions ---------------------------------------------------------------------------

    def delete_object(self, obj: Run) -> None:
        from runs.services import delete_run

        delete_run(run=obj)

    @admin.action(permissions=["cancel"], description="Cancel (interrupt) the selected runs")
    def cancel_interrupt(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._cancel(request, queryset, Run.CancelAction.INTERRUPT)

    @admin.action(permissions=["cancel"], description="Cancel (rollback) the selected runs")
    def cancel_rollback(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._cancel(request, queryset, Run.CancelAction.ROLLBACK)

    def _cancel(self, request: HttpRequest, queryset: QuerySet[Run], action: str) -> None:
        cancelled = []
        for run in queryset.active():
            try:
                cancel_run(run=run, action=action)
            except DomainError:  # it ended meanwhile
                continue
            cancelled.append(run.pk)
        still_running = wait_until_stopped(cancelled)
        self.message_user(
            request, f"{action}: {len(cancelled)} run(s) cancelled.", messages.SUCCESS
        )
        if still_running:
            self.message_user(
                request,
                f"{still_running} run(s) still stopping: their workers have the cancel.",
                messages.WARNING,
            )

    @admin.action(permissions=["rerun"], description="Re-run the selected finished runs")
    def rerun(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        from runs.rerun import rerun_run

        started, refused = 0, []
        for run in queryset.select_related("user"):
            try:
                rerun_run(run=run)
            except DomainError as exc:
                refused.append(f"{run.pk} ({exc.detail})")
                continue
            started += 1
        self.message_user(request, f"{started} new run(s) queued.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not re-run: {', '.join(refused)}", messages.ERROR)


def wait_until_stopped(run_ids: list[Any], timeout: float = CANCEL_WAIT_SECONDS) -> int:
    """Wait (polling the runs' rows) until none of the runs is active, at most `timeout`
    seconds; returns how many still are."""
    deadline = time.monotonic() + timeout
    while True:
        active = Run.objects.active().filter(pk__in=run_ids).count() if run_ids else 0
        if not active or time.monotonic() >= deadline:
            return active
        time.sleep(0.1)
