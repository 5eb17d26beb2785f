"""How requests are tied to users: tokens, session cookies, or the local single-user mode."""

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.base import ModelState
from django.db.models.signals import post_delete, post_save
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

logger = logging.getLogger(__name__)


class StoredTokenAuthentication(TokenAuthentication):
    """DRF's token lookup, a key holding a NUL character being an invalid token without one
    (PostgreSQL cannot take a NUL in a text parameter: the lookup was a 500 there)."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if "\x00" in key:
            raise AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)


class BearerTokenAuthentication(StoredTokenAuthentication):
    """`Authorization: Bearer <token>`, a token created with `manage.py drf_create_token`."""

    keyword = "Bearer"


class ApiKeyAuthentication(StoredTokenAuthentication):
    """`X-Api-Key: <token>`, what `langgraph_sdk.get_client(api_key=...)` sends."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        key = request.META.get("HTTP_X_API_KEY", "").strip()
        if not key:
            return None
        return self.authenticate_credentials(key)


class CsrfSessionAuthentication(SessionAuthentication):
    """A Django login session; unsafe methods need the CSRF token, as in the admin."""

    #: The browser sends the credentials by itself, on requests other sites make too.
    ambient = True


class LocalUserAuthentication(BaseAuthentication):
    """The embedded single-user mode: every request acts as the one local user."""

    #: Any request acts as the user, one another site makes in the user's browser too.
    ambient = True

    def authenticate(self, request: Request) -> tuple[Any, None]:
        return local_user(), None


def is_same_origin(request: Any) -> bool:
    """True when the browser says the request comes from this site: `Sec-Fetch-Site` is
    `same-origin` (or `none`: typed by the user), or, without it, `Origin` is this host's or a
    trusted one (CSRF_TRUSTED_ORIGINS). Without either header there is no such evidence."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if not origin:
        return False
    own = f"{request.scheme}://{request.get_host()}"
    return origin == own or origin in settings.CSRF_TRUSTED_ORIGINS


#: The local user's row as last read, and until when (monotonic) it is used without a query.
_local_user: tuple[float, Any] | None = None


def local_user() -> Any:
    """The local mode's user, created on first use; re-read every PERMISSION_CACHE_SECONDS.

    Each request gets its own copy, so that what a request caches on it stays its own.
    """
    global _local_user
    now = time.monotonic()
    if _local_user is not None and _local_user[0] > now:
        return request_copy(_local_user[1])
    User = get_user_model()
    user = None
    if _local_user is not None:
        user = User.objects.filter(pk=_local_user[1].pk).first()
    if user is None:
        user, created = User.objects.get_or_create(username=settings.LOCAL_USERNAME)
        if created:
            logger.warning("local auth mode: created the local user %r", user.username)
    _local_user = (now + settings.PERMISSION_CACHE_SECONDS, user)
    return request_copy(user)


def request_copy(user: Any) -> Any:
    """What `copy.copy` makes of a model instance (its field values, and a state of its own with
    its own copy of the related objects' cache), without pickling's round trip (`__reduce__`,
    `model_unpickle`, the app registry): about a fifth of the cost."""
    clone = object.__new__(type(user))
    clone.__dict__.update(user.__dict__)
    state = object.__new__(ModelState)
    state.__dict__.update(user._state.__dict__)
    if "fields_cache" in state.__dict__:
        state.fields_cache = state.fields_cache.copy()
    clone._state = state
    return clone


def _forget_local_user(**_: Any) -> None:
    global _local_user
    _local_user = None


post_save.connect(_forget_local_user, sender=settings.AUTH_USER_MODEL, dispatch_uid="local-user")
post_delete.connect(_forget_local_user, sender=settings.AUTH_USER_MODEL, dispatch_uid="local-user")
