"""Admin deletions through the services the API uses, which may refuse (a busy thread, an
active run): the refusal is shown as a message, and nothing is deleted.

The confirmation page lists the objects as Django's does, but a kind that the database deletes
without loading it (a run's journal events, stored stream events, token usage: rows nothing else
refers to) is one line with its count, however many rows it has (Django's page loads and lists
every row: ten thousand journal events made a page of megabytes)."""

from collections import defaultdict
from functools import reduce
from operator import or_
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as confirm_deletion
from django.contrib.admin.utils import NestedObjects, quote
from django.db import router, transaction
from django.db.models import Model, QuerySet
from django.db.models.deletion import Collector
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from deerflow_site.admin_selection import ChecksSelectedIds
from deerflow_site.errors import DomainError


class CountingCollector(NestedObjects):
    """The admin's collector, except that the kinds the database can delete without loading
    (no further cascades, no delete signals) are kept as querysets, to be counted."""

    def can_fast_delete(self, objs: Any, from_field: Any = None) -> bool:
        return Collector.can_fast_delete(self, objs, from_field)

    def counted(self) -> dict[type[Model], int]:
        """The rows of each kind kept as querysets, each row once (a journal event goes with
        its thread and with its run)."""
        by_model: dict[type[Model], list[QuerySet[Any]]] = defaultdict(list)
        for queryset in self.fast_deletes:
            by_model[queryset.model].append(queryset)
        return {model: reduce(or_, sets).count() for model, sets in by_model.items()}


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
        """What goes with `objs`, for the confirmation page: (the nested list of lines, the
        count of each kind by its plural name, the permissions missing, the protected objects).

        The kinds deleted without loading are one line each, "Journal events: 10000", after
        the objects; no permission is needed for the related kinds: the service deletes what
        belongs to the object (a run's journal events and feedback, a thread's runs), kinds
        staff may not delete on their own (the journal is read-only)."""
        objs = list(objs)
        if not objs:
            return [], {}, set(), []
        collector = CountingCollector(using=router.db_for_write(self.model), origin=objs)
        collector.collect(objs)
        counted = {model: count for model, count in collector.counted().items() if count}
        lines = collector.nested(self._deletion_line)
        lines += [f"{capfirst(m._meta.verbose_name_plural)}: {n}" for m, n in counted.items()]
        model_count = {
            model._meta.verbose_name_plural: len(loaded)
            for model, loaded in collector.model_objs.items()
        }
        model_count.update({m._meta.verbose_name_plural: n for m, n in counted.items()})
        protected = [self._deletion_line(obj) for obj in collector.protected]
        return lines, model_count, set(), protected

    def _deletion_line(self, obj: Model) -> str:
        """An object's line on the confirmation page, as Django's: a link where it has a page."""
        opts = obj._meta
        if self.admin_site.is_registered(type(obj)):
            name = f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change"
            try:
                url = reverse(name, args=(quote(obj.pk),))
            except NoReverseMatch:
                pass
            else:
                return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)
        return f"{capfirst(opts.verbose_name)}: {obj}"

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
