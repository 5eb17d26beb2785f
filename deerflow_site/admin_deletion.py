"""Admin deletions through the services the API uses, which may refuse (a busy thread, an
active run): the refusal is shown as a message, and nothing is deleted."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as confirm_deletion
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from deerflow_site.admin_selection import ChecksSelectedIds
from deerflow_site.errors import DomainError


class DeletesThroughService(ChecksSelectedIds):
    """A ModelAdmin whose Delete button of a page and the bulk "Delete selected" action
    call `delete_object`, which deletes through a service or raises a DomainError."""

    def delete_object(self, obj: Any) -> None:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_object(obj)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """Django's list of what goes with `objs`, needing no permission for the related kinds:
        the service deletes what belongs to the object (a run's journal events and feedback, a
        thread's runs), kinds staff may not delete on their own (the journal is read-only)."""
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set(), protected

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as exc:
            self.message_user(request, f"Not deleted: {exc.detail}", messages.ERROR)
            opts = self.model._meta
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
            return HttpResponseRedirect(url)

    @admin.action(permissions=["delete"], description="Delete selected %(verbose_name_plural)s")
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        """Django's confirmation page first; then each object through `delete_object`."""
        if not request.POST.get("post"):
            return confirm_deletion(self, request, queryset)
        deleted, refused = 0, []
        for obj in queryset:
            try:
                with transaction.atomic():
                    self.log_deletions(request, [obj])
                    self.delete_object(obj)
            except DomainError as exc:
                refused.append(f"{obj} ({exc.detail})")
                continue
            deleted += 1
        name = self.model._meta.verbose_name_plural
        self.message_user(request, f"Deleted {deleted} {name}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not deleted: {', '.join(refused)}", messages.ERROR)
        return None
