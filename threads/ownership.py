"""Who may see and act on a thread: its owner, the users and groups it is shared with (guardian
object permissions), and staff holding the global permission.

The owner's rights are guardian object permissions like any share, so that the admin's sharing
pages and guardian's own checks see them. They are written in one statement, `GRANT_OWNER_SQL`,
which takes the permission ids from the permission table itself (nothing cached that a flush of
the database could leave stale). Visibility is one condition whose first branch is the thread's
own indexed `owner_id` column; the guardian branches only decide for threads shared with the
caller.
"""

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q

from deerflow_site.dbcompat import hot_cursor
from threads.models import ThreadGroupObjectPermission, ThreadUserObjectPermission

#: The object permissions an owner holds, and the only ones a thread is shared with.
OWNER_PERMISSIONS = ("view_thread", "change_thread", "delete_thread")

GRANT_OWNER_SQL = """
    INSERT INTO {by_user} (user_id, permission_id, content_object_id)
    SELECT %s, p.id, %s FROM {permissions} p JOIN {content_types} c ON c.id = p.content_type_id
    WHERE c.app_label = 'threads' AND c.model = 'thread' AND p.codename IN ({codenames})
    ON CONFLICT DO NOTHING
"""
#: The id of one of the threads app's permissions, by codename.
PERMISSION_SQL = """SELECT p.id FROM {permissions} p JOIN {content_types} c
    ON c.id = p.content_type_id WHERE c.app_label = 'threads' AND p.codename = %s"""
#: The user, or one of their groups, holds the permission on `t` (a thread row).
HOLDS_SQL = """(
    EXISTS (SELECT 1 FROM {by_user} u
            WHERE u.content_object_id = t.thread_id AND u.user_id = %s
              AND u.permission_id = ({permission}))
    OR EXISTS (SELECT 1 FROM {by_group} g JOIN {memberships} m ON m.group_id = g.group_id
               WHERE g.content_object_id = t.thread_id AND m.user_id = %s
                 AND g.permission_id = ({permission})))"""
#: `t` is the user's (its indexed owner column, checked first), or HOLDS_SQL.
OWNS_OR_HOLDS_SQL = "(t.owner_id = %s OR {holds})"


class OwnerPermissionsMissing(RuntimeError):
    """The threads app's object permissions are not in the database (migrate was not run)."""


def _tables() -> dict[str, str]:
    return {
        "by_user": ThreadUserObjectPermission._meta.db_table,
        "by_group": ThreadGroupObjectPermission._meta.db_table,
        "memberships": get_user_model().groups.through._meta.db_table,
        "permissions": Permission._meta.db_table,
        "content_types": ContentType._meta.db_table,
    }


@cache
def _grant_owner_sql() -> str:
    codenames = ", ".join(f"'{codename}'" for codename in OWNER_PERMISSIONS)
    return GRANT_OWNER_SQL.format(codenames=codenames, **_tables())


def grant_owner(*, thread_id: str, user_id: int, new_thread: bool = False, db: Any = None) -> int:
    """Give the user the owner's object permissions on the thread, in one statement (inside the
    caller's transaction, on `db`: this thread's connection to the default database unless
    given); rights the user already holds stay as they are. Returns the rows added. A
    `new_thread` must get all of them: raises OwnerPermissionsMissing otherwise."""
    with hot_cursor(db or connections[DEFAULT_DB_ALIAS]) as cursor:
        cursor.execute(_grant_owner_sql(), [user_id, thread_id])
        added = cursor.rowcount
    if new_thread and added != len(OWNER_PERMISSIONS):
        raise OwnerPermissionsMissing(
            f"{added} of the owner's {len(OWNER_PERMISSIONS)} thread permissions were granted: "
            "run manage.py migrate"
        )
    return added


def revoke_owner(*, thread_id: str, user_id: int) -> None:
    """Take the owner's object permissions on the thread from the user (one statement)."""
    ThreadUserObjectPermission.objects.filter(
        user_id=user_id,
        content_object_id=thread_id,
        permission__content_type__app_label="threads",
        permission__codename__in=OWNER_PERMISSIONS,
    ).delete()


@cache
def rights_sql(*, owner_counts: bool) -> str:
    """The condition that `t` is the user's or held by them (`owner_counts`), or held only.

    Parameters, in order: with `owner_counts`, the user's id; then the user's id and the
    permission's codename, twice (by the user, by a group of theirs).
    """
    tables = _tables()
    holds = HOLDS_SQL.format(permission=PERMISSION_SQL.format(**tables), **tables)
    return OWNS_OR_HOLDS_SQL.format(holds=holds) if owner_counts else holds


def rights_params(*, user_id: int, permission: str, owner_counts: bool) -> list[Any]:
    """The parameters of `rights_sql(owner_counts=...)` for the user and the permission."""
    held = [user_id, permission, user_id, permission]
    return [user_id, *held] if owner_counts else held


def visible_to(user: Any) -> Q:
    """The threads the user owns, or that are shared with them or a group of theirs (view)."""
    by_user = ThreadUserObjectPermission.objects.filter(
        user=user, permission__codename="view_thread", permission__content_type__app_label="threads"
    ).values("content_object_id")
    by_group = ThreadGroupObjectPermission.objects.filter(
        group__user=user,
        permission__codename="view_thread",
        permission__content_type__app_label="threads",
    ).values("content_object_id")
    return Q(owner=user) | Q(pk__in=by_user) | Q(pk__in=by_group)
