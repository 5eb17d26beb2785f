"""Reads of threads, filtered by what the caller may see."""

from collections.abc import Iterable
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import QuerySet

from deerflow_site.dbcompat import hot_cursor, json_contains, row_lock_clause
from deerflow_site.errors import Forbidden
from deerflow_site.rows import from_row, model_columns
from threads.exceptions import ThreadNotFound
from threads.models import Thread
from threads.ownership import rights_params, rights_sql, visible_to

SORT_FIELDS = ("thread_id", "status", "created_at", "updated_at", "state_updated_at")


def visible_threads(*, user: Any) -> QuerySet[Thread]:
    """Every thread the user may view: owned or shared ones, all of them for staff."""
    if user.has_perm("threads.view_thread"):
        return Thread.objects.all()
    return Thread.objects.filter(visible_to(user))


#: A thread's state (what the thread row mirrors of its latest checkpoint): it grows with the
#: conversation, and what acts on a thread without reading its state defers it.
STATE_FIELDS = frozenset({"values", "interrupts"})


def get_thread(
    *,
    user: Any,
    thread_id: str,
    action: str = "view",
    for_update: bool = False,
    with_state: bool = True,
) -> Thread:
    """The thread if the user may view it (404 otherwise); 403 if they may not `action` it.

    One query, which reads the row and the user's object permissions on it; global
    permissions (staff) come from the user's cached model permissions. `for_update` locks the
    row until the surrounding transaction ends. `with_state=False` leaves the thread's state
    (`STATE_FIELDS`) unread, deferred (read on first use), for callers that do not need it.
    """
    deferred = frozenset() if with_state else STATE_FIELDS
    db = connections[DEFAULT_DB_ALIAS]  # once, rather than through the proxy per use
    with hot_cursor(db) as cursor:
        cursor.execute(*_thread_with_rights(db, user, thread_id, action, for_update, deferred))
        row = cursor.fetchone()
    if row is None or not (row[-2] or user.has_perm("threads.view_thread")):
        raise ThreadNotFound()
    if action != "view" and not (row[-1] or user.has_perm(f"threads.{action}_thread")):
        raise Forbidden(f"You may not {action} this thread.")
    return from_row(Thread, row, deferred, db=db)


def require_visible_thread(*, user: Any, thread_id: str) -> str:
    """The thread's id if the user may view it (404 otherwise), reading none of its columns:
    for reads of what hangs off a thread (its journal), whose state may be large."""
    if user.has_perm("threads.view_thread"):
        visible = Thread.objects.filter(pk=thread_id).exists()
    else:
        params = rights_params(user_id=user.pk, permission="view_thread", owner_counts=True)
        with connection.cursor() as cursor:
            cursor.execute(_may_view_sql(), [*params, thread_id])
            row = cursor.fetchone()
        visible = bool(row and row[0])
    if not visible:
        raise ThreadNotFound()
    return thread_id


# Kept as SQL: every request on a thread runs it, and the ORM took eight times longer to compile
# it (four permission subqueries, each joining permissions and content types) than SQLite to
# run it. The same text serves SQLite and PostgreSQL.
THREAD_WITH_RIGHTS_SQL = """
    SELECT {columns}, {may_view} AS may_view, {may_act} AS may_act
    FROM {threads} t WHERE t.thread_id = %s {lock}
"""
MAY_VIEW_SQL = "SELECT {may_view} FROM {threads} t WHERE t.thread_id = %s"


def _thread_with_rights(
    db: Any, user: Any, thread_id: str, action: str, for_update: bool, deferred: frozenset[str]
) -> tuple[str, list[Any]]:
    lock = ""
    if for_update and db.features.has_select_for_update:
        lock = row_lock_clause(db).strip()
        if db.features.has_select_for_update_of:
            lock += " OF t"
    params = rights_params(user_id=user.pk, permission="view_thread", owner_counts=True)
    if action != "view":
        params += rights_params(user_id=user.pk, permission=f"{action}_thread", owner_counts=False)
    text = _thread_with_rights_sql(checks_action=action != "view", lock=lock, deferred=deferred)
    return text, [*params, thread_id]


@cache
def _thread_with_rights_sql(*, checks_action: bool, lock: str, deferred: frozenset[str]) -> str:
    """The statement's text, made once per shape (the table names never change)."""
    return THREAD_WITH_RIGHTS_SQL.format(
        columns=model_columns(Thread, "t", deferred),
        may_view=rights_sql(owner_counts=True),
        may_act=rights_sql(owner_counts=False) if checks_action else "0",
        threads=Thread._meta.db_table,
        lock=lock,
    )


@cache
def _may_view_sql() -> str:
    return MAY_VIEW_SQL.format(
        may_view=rights_sql(owner_counts=True), threads=Thread._meta.db_table
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
