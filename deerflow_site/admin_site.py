"""The admin site: Django's, whose every view first refuses a NUL character in its address,
query or form (a 400), which no id, filter or text of ours holds and PostgreSQL cannot take in
a text parameter (a 500 from the lookup otherwise), and answers 400 to a list filter's integer
SQLite cannot bind (`?id__in=` of 30 digits). `AdminConfig`, in INSTALLED_APPS, makes it the
default site."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.admin import apps as admin_apps
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

NUL = "\x00"


def holds_nul(request: HttpRequest, *view_args: Any) -> bool:
    """Whether the request's path, view arguments, query or form values hold a NUL."""
    if NUL in request.path or any(NUL in str(value) for value in view_args):
        return True
    forms = (request.GET, request.POST) if request.method == "POST" else (request.GET,)
    return any(
        NUL in key or any(NUL in value for value in values)
        for form in forms
        for key, values in form.lists()
    )


def refusing_nul(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """`view`, answering 400 to a request that holds a NUL character, or whose integer
    the database cannot take (SQLite raises OverflowError binding one beyond 64 bits; a
    transaction of the view's is rolled back as the error leaves it)."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if holds_nul(request, *args, *kwargs.values()):
            return HttpResponseBadRequest("NUL characters are not allowed.")
        try:
            return view(request, *args, **kwargs)
        except OverflowError:
            # SQLite cannot bind an integer beyond 64 bits: a list's `?id__in=` of 30 digits.
            return HttpResponseBadRequest("A number beyond the database's range.")

    return checked


class AdminSite(admin.AdminSite):
    """Django's admin site, with NUL characters refused before any view runs."""

    def admin_view(self, view: Callable[..., Any], cacheable: bool = False) -> Callable[..., Any]:
        return super().admin_view(refusing_nul(view), cacheable)


class AdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with `AdminSite` as its default site."""

    default_site = "deerflow_site.admin_site.AdminSite"
