"""How requests are tied to users: tokens, session cookies, or the local single-user mode."""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.request import Request

logger = logging.getLogger(__name__)


class BearerTokenAuthentication(TokenAuthentication):
    """`Authorization: Bearer <token>`, a token created with `manage.py drf_create_token`."""

    keyword = "Bearer"


class ApiKeyAuthentication(TokenAuthentication):
    """`X-Api-Key: <token>`, what `langgraph_sdk.get_client(api_key=...)` sends."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        key = request.META.get("HTTP_X_API_KEY", "").strip()
        if not key:
            return None
        return self.authenticate_credentials(key)


class CsrfSessionAuthentication(SessionAuthentication):
    """A Django login session; unsafe methods need the CSRF token, as in the admin."""


class LocalUserAuthentication(BaseAuthentication):
    """The embedded single-user mode: every request acts as the one local user."""

    def authenticate(self, request: Request) -> tuple[Any, None]:
        return local_user(), None


_local_user_id: int | None = None


def local_user() -> Any:
    """The local mode's user, created on first use."""
    global _local_user_id
    User = get_user_model()
    if _local_user_id is not None:
        user = User.objects.filter(pk=_local_user_id).first()
        if user is not None:
            return user
    user, created = User.objects.get_or_create(username=settings.LOCAL_USERNAME)
    if created:
        logger.warning("local auth mode: created the local user %r", user.username)
    _local_user_id = user.pk
    return user


def authenticate_request(request: Request) -> Any | None:
    """The user behind a request by the configured authenticators, for views outside DRF."""
    for authenticator in request.authenticators:
        result = authenticator.authenticate(request)
        if result is not None:
            return result[0]
    return None
