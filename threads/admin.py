"""Staff browse threads by id, owner and metadata, and manage who may see each one."""

from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from threads.models import Thread


@admin.register(Thread)
class ThreadAdmin(GuardedModelAdmin):
    """Threads, with guardian's object-permission pages (sharing with users and groups)."""

    list_display = ("thread_id", "owner", "status", "created_at", "updated_at")
    list_filter = ("status", "created_at")
    search_fields = ("thread_id", "owner__username", "owner__email", "metadata")
    readonly_fields = ("created_at", "updated_at", "state_updated_at")
    raw_id_fields = ("owner",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
