"""Async views outside DRF (SSE, wait, cancel, state): the same auth, scopes and error bodies."""

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.utils.mediatypes import media_type_matches
from rest_framework.views import APIView

from deerflow_site.api import parsers
from deerflow_site.api.errors import error_response
from deerflow_site.api.permissions import HasScope
from deerflow_site.bridge import Executor, call_sync
from deerflow_site.errors import Forbidden, Invalid

AsyncView = Callable[..., Awaitable[HttpResponse]]

NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}


def _authenticate(request: HttpRequest, view: Any) -> Any:
    """The request's user (None: no credentials), the view's scope checked (HasScope, as for
    DRF views): one thread hop for both."""
    request.body  # noqa: B018 - read now, so that the body stays readable after DRF parses it
    drf_request = Request(
        request,
        # The session's CSRF check reads the form fields of a POST, through the parsers.
        parsers=[cls() for cls in api_settings.DEFAULT_PARSER_CLASSES],
        authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES],
    )
    user = drf_request.user  # runs the authenticators; AuthenticationFailed propagates
    # Cookies and the local mode come with any request the browser makes, another site's too.
    request.ambient_credentials = getattr(  # type: ignore[attr-defined]
        drf_request.successful_authenticator, "ambient", False
    )
    if user is not None and user.is_authenticated:
        permission = HasScope()
        if not permission.has_permission(drf_request, view):
            raise Forbidden(permission.message)
    return user


def authenticate_in_view(request: HttpRequest) -> Any:
    """For views of `api_view(authenticates_in_view=True)`: authenticate the request (401 as
    `api_view` answers it), check the scope (403), set `request.user` and parse the body (422),
    in that order, from the view's own sync code, so that authentication shares its thread hop.
    Returns the user."""
    user = _authenticate(request, request.api_view)  # type: ignore[attr-defined]
    if user is None or not user.is_authenticated:
        raise drf_exceptions.NotAuthenticated(NOT_AUTHENTICATED["detail"])
    request.user = user
    request.json_body = json_body(request)  # type: ignore[attr-defined]
    return user


def unauthorized(request: HttpRequest, detail: Any) -> JsonResponse:
    """A 401 with the `WWW-Authenticate` challenge DRF's views send (the first authenticator's)."""
    response = JsonResponse({"detail": detail}, status=401)
    authenticators = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    challenge = authenticators[0]().authenticate_header(request) if authenticators else None
    if challenge:
        response["WWW-Authenticate"] = challenge
    return response


def api_view(
    *,
    required_scopes: Mapping[str, str] | None = None,
    on: Executor = Executor.THREAD_SENSITIVE,
    authenticates_in_view: bool = False,
) -> Callable[[AsyncView], AsyncView]:
    """Wrap an async view: authenticate (401), check the API scope of the method (403, the
    `HasScope` permission of DRF views: `required_scopes={"POST": "runs:create"}`), map domain
    errors.

    The view receives `request.user` set; JSON body errors become 422. `on`: the executor
    (`deerflow_site.bridge`) the view does its database work on, where authentication runs too:
    `Executor.API` for long responses, instead of the request's own thread.
    `authenticates_in_view`: the view calls `authenticate_in_view(request)` first thing in its
    own sync code (one thread hop for authentication and its work); its 401s are answered here.
    """

    def decorate(view: AsyncView) -> AsyncView:
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if authenticates_in_view:
                request.api_view = wrapped  # type: ignore[attr-defined]
                try:
                    return await view(request, *args, **kwargs)
                except (
                    drf_exceptions.NotAuthenticated,
                    drf_exceptions.AuthenticationFailed,
                ) as exc:
                    return unauthorized(request, exc.detail)
                except Exception as exc:
                    return error_response(exc)
            try:
                user = await call_sync(_authenticate, request, wrapped, on=on)
            except (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed) as exc:
                return unauthorized(request, exc.detail)
            except Exception as exc:  # CSRF, a session's malformed body, no scope, too large
                return error_response(exc)
            if user is None or not user.is_authenticated:
                return unauthorized(request, NOT_AUTHENTICATED["detail"])
            request.user = user
            try:
                # Every body is parsed (within bounds) before the view, even by views that read
                # none: a malformed or unbounded body is a 422 that changes nothing.
                request.json_body = json_body(request)  # type: ignore[attr-defined]
                return await view(request, *args, **kwargs)
            except Exception as exc:
                return error_response(exc)

        wrapped.required_scopes = dict(required_scopes or {})  # type: ignore[attr-defined]
        # Like DRF's APIView: CSRF is enforced by the session authenticator, not the middleware,
        # so token clients are not asked for a CSRF token.
        wrapped.csrf_exempt = True  # type: ignore[attr-defined]
        return wrapped

    return decorate


def json_body(request: HttpRequest) -> Any:
    """The request's JSON body ({} when empty), parsed once (api_view parses it before the
    view); malformed or unbounded JSON is a 422, a body of another media type than
    `application/json` a 415, as DRF's views answer.

    Another site's page can send a `text/plain` or form body without asking first (a CORS
    simple request), and in the local mode any request acts as the local user: such a body is
    never taken for JSON, so that page cannot start, change or cancel anything.
    """
    if hasattr(request, "json_body"):
        return request.json_body
    if not request.body:
        return {}
    content_type = request.content_type or ""
    if content_type != "application/json" and not media_type_matches(
        parsers.JSONParser.media_type, content_type
    ):
        raise drf_exceptions.UnsupportedMediaType(content_type)
    try:
        return parsers.loads(request.body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise Invalid(f"Malformed JSON: {exc}") from None


def by_method(
    *,
    refused: str | None = None,
    streams: bool = False,
    **handlers: Callable[..., Awaitable[HttpResponse]],
) -> Callable[..., Any]:
    """One async view per HTTP method on one path; other methods get a JSON 405 (`refused`
    explains why, when the path exists but the server does not offer that operation).

    HEAD is answered as GET is, without the body (as Django's and DRF's views do), except on a
    path whose GET may stream (`streams=True`): a HEAD there would open the stream."""
    head = "get" in handlers and "head" not in handlers and not streams
    allowed = ", ".join(
        sorted({method.upper() for method in handlers} | ({"HEAD"} if head else set()))
    )
    for method, handler in handlers.items():
        scopes = getattr(handler, "required_scopes", None)
        if scopes and method.upper() not in scopes:
            raise ImproperlyConfigured(f"{handler.__name__} names no API scope for {method}")

    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        method = (request.method or "").lower()
        handler = handlers.get(method)
        if handler is None and head and method == "head":
            return _headers_of(await handlers["get"](request, *args, **kwargs))
        if handler is None:
            detail = refused or f'Method "{request.method}" not allowed.'
            response = JsonResponse({"detail": detail}, status=405)
            response["Allow"] = allowed
            return response
        return await handler(request, *args, **kwargs)

    view.csrf_exempt = True  # type: ignore[attr-defined]  # api_view authenticates each handler
    view.handlers = handlers  # type: ignore[attr-defined]
    # What drf-spectacular reads: a DRF view declaration whose methods are the handlers, so
    # `@extend_schema` on a handler documents it (deerflow_site.api.schema).
    name = "".join(h.__name__.title().replace("_", "") for h in handlers.values()) or "Refused"
    view.cls = type(f"{name}View", (APIView,), dict(handlers))  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    return view


def _headers_of(response: HttpResponse) -> HttpResponse:
    """A GET's answer to a HEAD: its status and headers, with the length of its body."""
    answer = HttpResponse(status=response.status_code, headers=response.headers)
    if not response.streaming:
        answer["Content-Length"] = str(len(response.content))
    return answer
