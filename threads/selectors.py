"""Reads of threads, filtered by what the caller may see."""

from collections.abc import Iterable
from typing import Any

from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet

from deerflow_site.api.errors import Forbidden
from deerflow_site.dbcompat import json_contains
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

    One query: the right to `action` it is read beside the row, unless a global permission
    (staff) grants it. `for_update` locks its row until the surrounding transaction ends.
    """
    threads = visible_threads(user=user).filter(pk=thread_id)
    permission = f"{action}_thread"
    check = action != "view" and not user.has_perm(f"threads.{permission}")
    if check:
        threads = threads.annotate(may_act=_holds(permission, user))
    if for_update:
        threads = threads.select_for_update(of=("self",))
    thread = threads.first()
    if thread is None:
        raise ThreadNotFound()
    if check and not thread.may_act:
        raise Forbidden(f"You may not {action} this thread.")
    return thread


def _holds(permission: str, user: Any) -> ExpressionWrapper:
    """True where the user, or one of their groups, holds the object `permission` on the row."""
    by_user = ThreadUserObjectPermission.objects.filter(
        content_object=OuterRef("pk"),
        user=user,
        permission__codename=permission,
        permission__content_type__app_label="threads",
    )
    by_group = ThreadGroupObjectPermission.objects.filter(
        content_object=OuterRef("pk"),
        group__user=user,
        permission__codename=permission,
        permission__content_type__app_label="threads",
    )
    return ExpressionWrapper(Q(Exists(by_user)) | Q(Exists(by_group)), BooleanField())


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
