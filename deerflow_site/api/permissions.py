"""API scopes (threads:read, runs:create, ...) as Django model permissions.

Every user is put in the default API group at creation; removing a user from it, or granting
the permissions some other way, is how staff narrow or widen what a user may do.
"""

from typing import Any

from deerflow_site.api.errors import Forbidden

SCOPES: dict[str, str] = {
    "threads:read": "threads.api_read_threads",
    "threads:write": "threads.api_write_threads",
    "threads:delete": "threads.api_delete_threads",
    "runs:create": "runs.api_create_runs",
    "runs:read": "runs.api_read_runs",
    "runs:cancel": "runs.api_cancel_runs",
}


def require_scope(user: Any, scope: str) -> None:
    """403 unless the user holds the model-level permission behind `scope`."""
    if not user.has_perm(SCOPES[scope]):
        raise Forbidden(f"You lack the {scope} permission.")
