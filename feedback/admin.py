"""Feedback in the admin: a list filtered by rating, thread, run and user, and each run's
feedback on its page."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from deerflow_site.admin_lists import CappedCountPaginator, RunFilter, ThreadFilter, UsernameFilter
from deerflow_site.admin_selection import ChecksSelectedIds
from feedback.models import Feedback


@admin.register(Feedback)
class FeedbackAdmin(ChecksSelectedIds):
    """Every user's feedback, newest first."""

    list_display = ("feedback_id", "rating", "user", "thread_id", "run_id", "comment", "created_at")
    list_filter = ("rating", ThreadFilter, RunFilter, UsernameFilter)
    list_select_related = ("user",)
    ordering = ("-created_at",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    raw_id_fields = ("run", "thread", "user")
    readonly_fields = ("feedback_id", "run", "thread", "user", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # given by users through the API


class FeedbackInline(admin.TabularInline):
    """The feedback users gave on a run (on the run's page)."""

    model = Feedback
    fields = ("user", "rating", "comment", "message_id", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
