"""Model permissions (the API scopes, staff's global rights) read once per user and kept briefly.

Django's ModelBackend reads a user's permissions in two queries, and keeps them only on the
user object, which every request fetches anew: every API request paid both queries. Here they
are one query, kept in this process for PERMISSION_CACHE_SECONDS. A change made through the ORM
in this process (the admin, `manage.py` commands, tests) empties the cache at once; other
processes see it within PERMISSION_CACHE_SECONDS.
"""

import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from django.db.models.signals import m2m_changed, post_delete, post_save

#: More users than this in the cache and it starts afresh (a bound, not an eviction policy).
MAX_CACHED_USERS = 10_000

_lock = threading.Lock()
#: user id → (monotonic expiry, the user's "app_label.codename" permissions)
_cache: dict[int, tuple[float, frozenset[str]]] = {}


def user_permissions(user_id: int) -> frozenset[str]:
    """Every model permission of the user, directly or through their groups (one query)."""
    ttl = settings.PERMISSION_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        cached = _cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
    rows = (
        Permission.objects.filter(Q(user__id=user_id) | Q(group__user__id=user_id))
        .values_list("content_type__app_label", "codename")
        .distinct()
    )
    permissions = frozenset(f"{app_label}.{codename}" for app_label, codename in rows)
    if ttl > 0:
        with _lock:
            if len(_cache) >= MAX_CACHED_USERS:
                _cache.clear()
            _cache[user_id] = (now + ttl, permissions)
    return permissions


def forget_permissions(**_: Any) -> None:
    """Drop every cached permission set (a user's or a group's permissions changed)."""
    with _lock:
        _cache.clear()


class CachedModelBackend(ModelBackend):
    """ModelBackend whose `get_all_permissions` is one cached query (superusers: all, as ever)."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if user_obj.is_superuser:
            return super().get_all_permissions(user_obj, obj)
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = set(user_permissions(user_obj.pk))
        return user_obj._perm_cache


def has_model_permission(user: Any, perm: str) -> bool:
    """`user.has_perm(perm)` (no object: an API scope), answered from the cached set when it
    grants: Django's `has_perm` loads every backend by its dotted path on each call, then asks
    them in order, and the first (this module's, when AUTHENTICATION_BACKENDS names it first)
    answering True is the answer. Otherwise, Django's `has_perm` decides, every backend asked."""
    if (
        getattr(user, "is_active", False)  # a user model's (else has_perm alone decides)
        and settings.AUTHENTICATION_BACKENDS[0] == _BACKEND_PATH
        and (user.is_superuser or perm in CachedModelBackend().get_all_permissions(user))
    ):
        return True
    return user.has_perm(perm)


_BACKEND_PATH = f"{__name__}.{CachedModelBackend.__name__}"

# Connected when Django's auth first loads this backend: nothing is cached before that.
_User = get_user_model()
for _through in (_User.user_permissions.through, _User.groups.through, Group.permissions.through):
    m2m_changed.connect(forget_permissions, sender=_through, dispatch_uid=f"perms-m2m-{_through}")
for _model in (_User, Group, Permission):
    post_save.connect(forget_permissions, sender=_model, dispatch_uid=f"perms-save-{_model}")
    post_delete.connect(forget_permissions, sender=_model, dispatch_uid=f"perms-delete-{_model}")
