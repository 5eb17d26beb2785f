"""Admin list pages that stay fast on tables of millions of rows: counts are capped, and
filters by an id are typed in (an exact, indexed match) instead of listing every value."""

from collections.abc import Iterator
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

from deerflow_site.dbcompat import estimated_row_count

#: Admin lists count at most this many rows (the page says "10000" for anything more).
COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """A paginator that counts at most COUNT_CAP rows (`SELECT COUNT(*)` of a LIMITed query)."""

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet):
            return object_list[:COUNT_CAP].count()
        return min(len(object_list), COUNT_CAP)


class EstimatedCountPaginator(CappedCountPaginator):
    """On PostgreSQL an unfiltered list is counted by the planner's estimate (every page is
    reachable, no scan); a filtered one, or SQLite, as CappedCountPaginator does."""

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet) and not object_list.query.where:
            estimate = estimated_row_count(object_list.model._meta.db_table)
            if estimate is not None and estimate > COUNT_CAP:
                return estimate
        return super().count


class TextInputFilter(admin.SimpleListFilter):
    """A filter whose value is typed in; subclasses name the parameter and the lookup."""

    template = "admin/text_input_filter.html"
    #: The queryset lookup the typed value is matched with exactly.
    lookup: str = ""
    placeholder: str = ""

    def __init__(self, request: HttpRequest, params: dict[str, Any], *args: Any) -> None:
        super().__init__(request, params, *args)
        self.kept_params = [
            (name, value)
            for name, value in request.GET.items()
            if name not in (self.parameter_name, "p")
        ]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("", "")]  # the template draws an input instead; this only enables the filter

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        self.clear_url = changelist.get_query_string(remove=[self.parameter_name])
        yield {"selected": self.value() is None, "query_string": self.clear_url, "display": ""}

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = (self.value() or "").strip()
        if not value:
            return None
        try:
            return queryset.filter(**{self.lookup: value})
        except (ValueError, TypeError, ValidationError):  # not an id of that kind
            return queryset.none()


class ThreadFilter(TextInputFilter):
    title = "thread id"
    parameter_name = "thread_id"
    lookup = "thread_id"
    placeholder = "thread id"


class RunFilter(TextInputFilter):
    title = "run id"
    parameter_name = "run_id"
    lookup = "run_id"
    placeholder = "run id (UUID)"


class UsernameFilter(TextInputFilter):
    title = "user"
    parameter_name = "username"
    lookup = "user__username"
    placeholder = "username"
