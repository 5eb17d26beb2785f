"""API scopes (threads:read, runs:create, ...) as Django model permissions, checked by one
permission class.

Every user is put in the default API group at creation; removing a user from it, or granting
the permissions some other way, is how staff narrow or widen what a user may do. A view names
the scope each HTTP method needs once, like DRF's `DjangoModelPermissions`:

    class ThreadRunsView(APIView):
        required_scopes = {"GET": "runs:read", "POST": "runs:create"}

The async views (`async_views.api_view`) take the same map and are checked by the same class.
"""

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission

from deerflow_site.api.backends import has_model_permission

SCOPES: dict[str, str] = {
    "threads:read": "threads.api_read_threads",
    "threads:write": "threads.api_write_threads",
    "threads:delete": "threads.api_delete_threads",
    "runs:create": "runs.api_create_runs",
    "runs:read": "runs.api_read_runs",
    "runs:cancel": "runs.api_cancel_runs",
    "assistants:read": "runs.api_read_assistants",
}
#: Methods answered without a scope: CORS preflights and DRF's metadata.
SCOPE_FREE_METHODS = frozenset({"OPTIONS"})


class HasScope(BasePermission):
    """The user holds the API scope the view's `required_scopes` names for the request's method
    (HEAD as GET). A method the view handles but does not name is a configuration error."""

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Any, view: Any) -> bool:
        scope = self.scope_for(request.method or "", view)
        if scope is None:
            return True
        if has_model_permission(request.user, SCOPES[scope]):
            return True
        self.message = f"You lack the {scope} permission."
        return False

    @staticmethod
    def scope_for(method: str, view: Any) -> str | None:
        """The scope `view` needs for `method`; None when it needs none."""
        method = "GET" if method.upper() == "HEAD" else method.upper()
        required: Mapping[str, str] = getattr(view, "required_scopes", None) or {}
        if method in required:
            scope = required[method]
            if scope not in SCOPES:
                raise ImproperlyConfigured(f"{view!r}: unknown API scope {scope!r}")
            return scope
        if method in SCOPE_FREE_METHODS or not hasattr(view, method.lower()):
            return None  # the view answers 405
        raise ImproperlyConfigured(f"{type(view).__name__} names no API scope for {method}")
