"""API scopes as one permission class: every endpoint names the scope of each method it serves,
DRF views and async views alike, and the class refuses a view that forgets one."""

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from deerflow_site.api.async_views import api_view, by_method
from deerflow_site.api.permissions import SCOPES, HasScope

HANDLER_METHODS = ("get", "post", "put", "patch", "delete")
#: Async endpoints outside `api_view`, answered without credentials: the health check.
PUBLIC_ROUTES = ("ok",)


def _endpoints(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _endpoints(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            found.append((prefix + str(pattern.pattern), pattern.callback))
    return found


def _served(callback: Any) -> dict[str, Any]:
    """HTTP method -> what checks it: the DRF view class, or the async handler."""
    if hasattr(callback, "handlers"):  # by_method (its `cls` only declares it to the schema)
        return {m.upper(): handler for m, handler in callback.handlers.items()}
    view_class = getattr(callback, "cls", None)
    if view_class is not None and issubclass(view_class, APIView):
        return {m.upper(): view_class for m in HANDLER_METHODS if hasattr(view_class, m)}
    return {}


API_ENDPOINTS = [
    (route, callback)
    for route, callback in _endpoints(get_resolver().url_patterns)
    if route.startswith("api/") and _served(callback)
]


@pytest.mark.parametrize("route, callback", API_ENDPOINTS, ids=[r for r, _ in API_ENDPOINTS])
def test_every_api_method_names_its_scope(route: str, callback: Any) -> None:
    route = route.removeprefix("api/")
    for method, view in _served(callback).items():
        if isinstance(view, type):  # a DRF view
            if not any(isinstance(p, HasScope) for p in view().get_permissions()):
                continue  # it names its own permission classes (public, staff only)
        elif not hasattr(view, "required_scopes"):
            assert route in PUBLIC_ROUTES, f"{method} {route} is not behind api_view"
            continue
        assert HasScope.scope_for(method, view) in SCOPES, f"{method} {route}"


class Request:
    def __init__(self, method: str, perms: set[str]) -> None:
        self.method = method
        self.user = type("User", (), {"has_perm": lambda _, perm: perm in perms})()


class RunsView(APIView):
    required_scopes = {"GET": "runs:read"}

    def get(self) -> None: ...

    def post(self) -> None: ...


def test_the_scope_of_the_method_is_required() -> None:
    permission = HasScope()

    assert permission.has_permission(Request("GET", {"runs.api_read_runs"}), RunsView())
    assert permission.has_permission(Request("HEAD", {"runs.api_read_runs"}), RunsView())
    assert not permission.has_permission(Request("GET", set()), RunsView())
    assert permission.message == "You lack the runs:read permission."


def test_a_method_the_view_serves_without_a_scope_is_a_configuration_error() -> None:
    with pytest.raises(ImproperlyConfigured):
        HasScope().has_permission(Request("POST", set(SCOPES.values())), RunsView())


def test_a_method_the_view_does_not_serve_is_left_to_its_405() -> None:
    assert HasScope().has_permission(Request("PUT", set()), RunsView())


def test_an_async_view_served_for_a_method_it_names_no_scope_for_is_refused() -> None:
    @api_view(required_scopes={"GET": "runs:read"})
    async def join(request: Any) -> Any: ...

    with pytest.raises(ImproperlyConfigured):
        by_method(get=join, post=join)
