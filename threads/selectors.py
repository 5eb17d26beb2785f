"""Reads of threads, filtered by what the caller may see."""

from collections.abc import Iterable
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Q, QuerySet

from deerflow_site.dbcompat import json_contains
from deerflow_site.errors import Forbidden
from threads.exceptions import ThreadNotFound
from threads.models import Thread, ThreadGroupObjectPermission, ThreadUserObjectPermission

SORT_FIELDS = ("thread_id", "status", "created_at", "updated_at", "state_updated_at")


def _granted(permission: str, user: Any) -> Q:
    """Threads on which `user`, or one of their groups, holds the object `permission`."""
    by_user = ThreadUserObjectPermission.objects.filter(
        user=user, permission__codename=permission, permission__content_type__app_label="threads"
    ).values("content_object_id")
    by_group = ThreadGroupObjectPermission.objects.filter(
        group__user=user,
        permission__codename=permission,
        permission__content_type__app_label="threads",
    ).values("content_object_id")
    return Q(pk__in=by_user) | Q(pk__in=by_group)


def visible_threads(*, user: Any) -> QuerySet[Thread]:
    """Every thread the user may view: shared or owned ones, all of them for staff."""
    if user.has_perm("threads.view_thread"):
        return Thread.objects.all()
    return Thread.objects.filter(_granted("view_thread", user))


def get_thread(
    *, user: Any, thread_id: str, action: str = "view", for_update: bool = False
) -> Thread:
    """The thread if the user may view it (404 otherwise); 403 if they may not `action` it.

    One query, which reads the row and the user's object permissions on it; global
    permissions (staff) come from the user's cached model permissions. `for_update` locks the
    row until the surrounding transaction ends.
    """
    thread = next(
        iter(Thread.objects.raw(*_thread_with_rights(user, thread_id, action, for_update))), None
    )
    if thread is None or not (thread.may_view or user.has_perm("threads.view_thread")):
        raise ThreadNotFound()
    if action != "view" and not (thread.may_act or user.has_perm(f"threads.{action}_thread")):
        raise Forbidden(f"You may not {action} this thread.")
    return thread


# Kept as SQL: every request on a thread runs it, and the ORM took eight times longer to compile
# it (four permission subqueries, each joining permissions and content types) than SQLite to
# run it. The same text serves SQLite and PostgreSQL.
THREAD_WITH_RIGHTS_SQL = """
    SELECT t.*, {may_view} AS may_view, {may_act} AS may_act
    FROM {threads} t WHERE t.thread_id = %s {lock}
"""
HOLDS_SQL = """(
    EXISTS (SELECT 1 FROM {by_user} u
            WHERE u.content_object_id = t.thread_id AND u.user_id = %s
              AND u.permission_id = ({permission}))
    OR EXISTS (SELECT 1 FROM {by_group} g JOIN {memberships} m ON m.group_id = g.group_id
               WHERE g.content_object_id = t.thread_id AND m.user_id = %s
                 AND g.permission_id = ({permission})))"""
PERMISSION_SQL = """SELECT p.id FROM {permissions} p JOIN {content_types} c
    ON c.id = p.content_type_id WHERE c.app_label = 'threads' AND p.codename = %s"""


def _thread_with_rights(
    user: Any, thread_id: str, action: str, for_update: bool
) -> tuple[str, list[Any]]:
    lock = ""
    if for_update and connection.features.has_select_for_update:
        lock = "FOR UPDATE OF t" if connection.features.has_select_for_update_of else "FOR UPDATE"
    params: list[Any] = [user.pk, "view_thread", user.pk, "view_thread"]
    if action != "view":
        params += [user.pk, f"{action}_thread", user.pk, f"{action}_thread"]
    return _thread_with_rights_sql(checks_action=action != "view", lock=lock), [*params, thread_id]


@cache
def _thread_with_rights_sql(*, checks_action: bool, lock: str) -> str:
    """The statement's text, made once per shape (the table names never change)."""
    holds = HOLDS_SQL.format(
        by_user=ThreadUserObjectPermission._meta.db_table,
        by_group=ThreadGroupObjectPermission._meta.db_table,
        memberships=get_user_model().groups.through._meta.db_table,
        permission=PERMISSION_SQL.format(
            permissions=Permission._meta.db_table, content_types=ContentType._meta.db_table
        ),
    )
    return THREAD_WITH_RIGHTS_SQL.format(
        may_view=holds,
        may_act=holds if checks_action else "0",
        threads=Thread._meta.db_table,
        lock=lock,
    )


def search_threads(
    *,
    user: Any,
    metadata: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    ids: Iterable[str] | None = None,
    status: str | None = None,
) -> QuerySet[Thread]:
    """Visible threads matching every given filter."""
    threads = visible_threads(user=user)
    if metadata:
        threads = threads.filter(json_contains("metadata", metadata))
    if values:
        threads = threads.filter(json_contains("values", values))
    if ids is not None:
        threads = threads.filter(pk__in=list(ids))
    if status:
        threads = threads.filter(status=status)
    return threads


def thread_order(*, sort_by: str = "created_at", sort_order: str = "desc") -> tuple[str, str]:
    """The ORDER BY of a thread search (thread id breaks ties, so pages are stable)."""
    prefix = "-" if sort_order == "desc" else ""
    return f"{prefix}{sort_by}", f"{prefix}thread_id"
