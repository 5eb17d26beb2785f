"""Django's middleware, with the hooks that never touch the database run on the event loop.

Under ASGI, Django runs every hook of a `MiddlewareMixin` middleware through `sync_to_async`:
about a dozen thread hand-offs per request for the stock stack, each costing CPU and a wait for
the GIL, although these hooks only read and write headers and cookies. These subclasses call
them inline. The two hooks that can reach the database go to a thread exactly when they would:
saving a modified session, and storing messages that did not fit the cookie into the session.
"""

from typing import Any

from corsheaders import middleware as cors
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.messages.storage import default_storage
from django.contrib.sessions import middleware as sessions
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security
from django.utils.cache import patch_vary_headers
from django.utils.functional import SimpleLazyObject, empty

from deerflow_site.bridge import Executor, call_sync


class InlineHooks:
    """`__acall__` calling `process_request` / `process_response` on the event loop."""

    get_response: Any

    def response_needs_thread(self, request: HttpRequest) -> bool:
        """True when `process_response` may use the database for this request."""
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request):
                return await call_sync(
                    self.process_response, request, response, on=Executor.THREAD_SENSITIVE
                )
            response = self.process_response(request, response)
        return response


class CorsMiddleware(cors.CorsMiddleware):
    """corsheaders' middleware, which reads the Origin header through `request.headers` (every
    header of the request parsed into a new mapping, for each request): a request without one
    (a server's, an SDK's) gets what corsheaders gives it, `Vary: origin` where CORS applies,
    without that parse."""

    def add_response_headers(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if "HTTP_ORIGIN" in request.META:
            return super().add_response_headers(request, response)
        enabled = getattr(request, "_cors_enabled", None)
        if enabled is None:
            enabled = self.is_enabled(request)
        if enabled:
            patch_vary_headers(response, ("origin",))
        return response


class SecurityMiddleware(InlineHooks, security.SecurityMiddleware):
    pass


class SessionMiddleware(InlineHooks, sessions.SessionMiddleware):
    def response_needs_thread(self, request: HttpRequest) -> bool:
        session = request.session
        return session.modified or settings.SESSION_SAVE_EVERY_REQUEST


class CommonMiddleware(InlineHooks, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineHooks, csrf.CsrfViewMiddleware):
    """Also `process_view` on the loop: the token lives in a cookie, never in the session."""

    def __init__(self, get_response: Any) -> None:
        if settings.CSRF_USE_SESSIONS:
            raise ImproperlyConfigured("CSRF_USE_SESSIONS is not supported: tokens are cookies")
        super().__init__(get_response)

    async def process_view(
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(InlineHooks, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(InlineHooks, messages.MessageMiddleware):
    """The messages' storage is made when a view first uses it (the admin's pages), not for
    every API request (it reads settings and builds a cookie signer and a session storage)."""

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def response_needs_thread(self, request: HttpRequest) -> bool:
        storage = _used_message_storage(request)
        return storage is not None and (storage.used or storage.added_new)

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        if _used_message_storage(request) is None:
            return response  # nothing was read or added
        return super().process_response(request, response)


def _used_message_storage(request: HttpRequest) -> Any:
    """The request's message storage if something made it (None: untouched, or none)."""
    storage = getattr(request, "_messages", None)
    if isinstance(storage, SimpleLazyObject) and storage._wrapped is empty:
        return None
    return storage


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass
