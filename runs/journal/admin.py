"""The journal in the admin: a list of every event (filtered by thread, run, type, category)
and, on a run's page, its events in order, its token usage by model."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from deerflow_site.admin_lists import CappedCountPaginator, RunFilter, ThreadFilter
from deerflow_site.admin_selection import ChecksSelectedIds
from runs.models import Run, RunEvent, RunModelUsage

#: Events shown on a run's page; the rest are a click away, paged.
RUN_PAGE_EVENTS = 50
PREVIEW_CHARS = 120


def preview(value: Any) -> str:
    """A short one-line text of an event's content."""
    if isinstance(value, dict):
        value = value.get("content", value) if value.get("type") else value
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def run_events_url(run_id: Any) -> str:
    return reverse("admin:runs_runevent_changelist") + f"?run_id={run_id}"


@admin.register(RunEvent)
class RunEventAdmin(ChecksSelectedIds):
    """Every journal event, newest first; read-only (the journal is the audit trail)."""

    list_display = (
        "seq",
        "thread_id",
        "run_link",
        "event_type",
        "category",
        "summary",
        "created_at",
    )
    list_filter = (ThreadFilter, RunFilter, "category", "event_type")
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = [field.name for field in RunEvent._meta.fields]

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # The orders the indexes serve: a run's events by seq, a thread's newest first.
        if request.GET.get("run_id"):
            return ("seq",)
        if request.GET.get("thread_id"):
            return ("-seq",)
        return ("-id",)

    @admin.display(description="run")
    def run_link(self, event: RunEvent) -> str:
        url = reverse("admin:runs_run_change", args=[event.run_id])
        return format_html('<a href="{}">{}</a>', url, event.run_id)

    @admin.display(description="content")
    def summary(self, event: RunEvent) -> str:
        return preview(event.content)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting its run or thread deletes an event


class RunModelUsageInline(admin.TabularInline):
    """A run's tokens and calls by chat model."""

    model = RunModelUsage
    fields = ("model_name", "input_tokens", "output_tokens", "total_tokens", "llm_calls")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "token usage by model"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.display(description="journal")
def journal_of(run: Run) -> str:
    """The run's first RUN_PAGE_EVENTS events in order, and a link to all of them, paged."""
    events: QuerySet[RunEvent] = RunEvent.objects.filter(run=run).order_by("seq")
    rows = list(events.values_list("seq", "event_type", "content", "created_at")[:RUN_PAGE_EVENTS])
    if not rows:
        return "No events."
    table = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((seq, kind, preview(content), created) for seq, kind, content, created in rows),
    )
    return format_html(
        "<table><thead><tr><th>seq</th><th>type</th><th>content</th><th>at</th></tr></thead>"
        '<tbody>{}</tbody></table><p><a href="{}">All events of this run, paged →</a></p>',
        table,
        run_events_url(run.pk),
    )
