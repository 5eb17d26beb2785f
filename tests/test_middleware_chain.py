"""The served handler's flat middleware chain (deerflow_site/middleware_chain.py) answers every
request as Django's nested chain of the same middlewares does: the same status, headers (in
order), cookies and body, over the API's and the site's paths, with and without credentials,
sessions, CSRF tokens, CORS origins, preflights, a host Django refuses and a login that saves
its session on a thread. The API's paths go without the message storage, the site's keep it."""

import asyncio
import re
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client as DjangoClient
from django.test import override_settings
from django.urls import include, path

from deerflow_site.asgi import django_application
from deerflow_site.bridge import request_threads
from deerflow_site.middleware_chain import FlatChain
from tests.fixtures import token_for
from tests.test_asgi_handler import scope

API = settings.API_PREFIX
HTTP_DATE = re.compile(rb"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT")
ORIGIN = "http://localhost:3000"  # tests/settings.py's CORS_ALLOWED_ORIGINS


async def exchange(app: Any, method: str, path_: str, headers: dict[str, str], body: bytes) -> Any:
    """The response's status, headers in order (cookies' values, dates masked) and body (the admin
    form's CSRF token masked), from `app` driven as daphne drives it."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # the client stays until the answer
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = {"Host": "testserver"} | headers
    if body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    headers_ = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await app(scope(path_, method, headers=headers_), receive, send)
    start = sent[0]
    masked = []
    for name, value in start["headers"]:
        if name == b"Set-Cookie":
            value = re.sub(rb"^([^=]+)=[^;]*", rb"\1=<value>", value)
        masked.append((name, HTTP_DATE.sub(b"<date>", value)))  # the second may turn between
    content = b"".join(m.get("body", b"") for m in sent[1:])
    content = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"<token>", content)
    return start["status"], masked, content


async def close_request_threads_connections() -> None:
    """Sync views ran on the pooled request threads: their connections go, as the database the
    test had does (a later test without one would find them)."""
    for thread in list(request_threads._idle_request_threads):
        await asyncio.wrap_future(thread.submit(connections.close_all))


@pytest.fixture
def credentials(make_user: Any) -> dict[str, str]:
    user = make_user("alice")
    admin = make_user("root", is_staff=True, is_superuser=True)
    browser = DjangoClient()
    browser.force_login(user)
    staff = DjangoClient()
    staff.force_login(admin)
    return {
        "token": token_for(user),
        "session": browser.cookies[settings.SESSION_COOKIE_NAME].value,
        "staff session": staff.cookies[settings.SESSION_COOKIE_NAME].value,
        "csrf": _get_new_csrf_string(),
    }


def cases(c: dict[str, str]) -> list[tuple[str, str, dict[str, str], bytes]]:
    session = f"{settings.SESSION_COOKIE_NAME}={c['session']}"
    with_csrf = {
        "Cookie": f"{session}; {settings.CSRF_COOKIE_NAME}={c['csrf']}",
        "X-CSRFToken": c["csrf"],
    }
    wait = f"{API}/threads/{uuid.uuid4()}/runs/wait"
    cancel = f"{API}/threads/{uuid.uuid4()}/runs/{uuid.uuid4()}/cancel"
    run = b'{"assistant_id": "agent", "input": {}}'
    login = f"username=root&password=pw-12345!&csrfmiddlewaretoken={c['csrf']}".encode()
    return [
        ("GET", f"{API}/ok", {}, b""),
        ("GET", f"{API}/ok", {"Origin": ORIGIN}, b""),
        ("GET", f"{API}/ok", {"Origin": "http://elsewhere.test"}, b""),
        (
            "OPTIONS",
            f"{API}/threads",
            {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
            b"",
        ),
        ("OPTIONS", f"{API}/threads", {}, b""),
        ("GET", f"{API}/threads/search", {}, b""),
        ("POST", f"{API}/threads/search", {}, b"{}"),
        ("POST", f"{API}/threads/search", {"Authorization": f"Bearer {c['token']}"}, b"{}"),
        ("POST", f"{API}/threads/search", {"X-Api-Key": c["token"]}, b"{}"),
        ("POST", f"{API}/threads/search", {"Authorization": "Bearer nope"}, b"{}"),
        ("POST", f"{API}/threads/search", {"Cookie": session}, b"{}"),
        ("POST", f"{API}/threads/search", with_csrf, b"{}"),
        ("GET", f"{API}/info", {"Cookie": session}, b""),
        ("POST", wait, {"Cookie": session}, run),
        ("POST", wait, {}, run),
        ("POST", cancel, {"Cookie": session}, b""),
        ("POST", cancel, with_csrf, b""),
        ("POST", cancel, {"Authorization": f"Bearer {c['token']}"}, b""),
        ("GET", f"{API}/ok", {"Cookie": f"{settings.CSRF_COOKIE_NAME}=malformed!"}, b""),
        ("GET", f"{API}/ok", {"Host": "not-allowed.invalid"}, b""),
        ("GET", f"{API}/no/such/path", {}, b""),
        ("GET", API, {}, b""),
        ("GET", "/", {}, b""),
        ("GET", "/admin/login/", {}, b""),
        ("GET", "/admin/login/", {"Host": "not-allowed.invalid"}, b""),
        ("POST", "/admin/login/", {"Cookie": session}, b"username=root"),
        ("GET", "/admin/", {"Cookie": f"{settings.SESSION_COOKIE_NAME}={c['staff session']}"}, b""),
        ("GET", "/admin/", {"Cookie": session}, b""),
        (
            "POST",
            "/admin/login/",
            {
                "Cookie": f"{settings.CSRF_COOKIE_NAME}={c['csrf']}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            login,
        ),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_flat_chain_answers_as_djangos_nested_chain(credentials: dict[str, str]) -> None:
    assert isinstance(django_application._middleware_chain, FlatChain)
    stock = ASGIHandler()  # the same MIDDLEWARE, nested as Django nests it
    assert not isinstance(stock._middleware_chain, FlatChain)
    try:
        for method, path_, headers, body in cases(credentials):
            ours = await exchange(django_application, method, path_, headers, body)
            theirs = await exchange(stock, method, path_, headers, body)
            assert ours == theirs, (method, path_, headers)
    finally:
        await close_request_threads_connections()


seen: dict[str, bool] = {}


async def probe(request: HttpRequest) -> JsonResponse:
    seen[request.path] = hasattr(request, "_messages")
    return JsonResponse({})


urlpatterns = [
    path(f"{API.strip('/')}/probe", probe),
    path("probe", probe),
    path("", include("deerflow_site.urls")),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_apis_paths_go_without_the_message_storage_and_the_sites_keep_it() -> None:
    with override_settings(ROOT_URLCONF=__name__):
        for path_ in (f"{API}/probe", "/probe"):
            status, _, _ = await exchange(django_application, "GET", path_, {}, b"")
            assert status == 200
    assert seen == {f"{API}/probe": False, "/probe": True}


def test_a_chain_with_a_middleware_of_another_kind_stays_nested() -> None:
    with override_settings(
        MIDDLEWARE=[*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    ):
        handler = type(django_application)()
        assert not isinstance(handler._middleware_chain, FlatChain)
    assert get_user_model()  # the settings are restored for what follows


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_apis_shorter_chain_keeps_csrf_cors_and_header_auth_as_they_were(
    credentials: dict[str, str],
) -> None:
    session = f"{settings.SESSION_COOKIE_NAME}={credentials['session']}"
    search = f"{API}/threads/search"
    try:
        status, _, _ = await exchange(
            django_application, "POST", search, {"Cookie": session}, b"{}"
        )
        assert status == 403  # a session's unsafe request without the CSRF token
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        status, headers, _ = await exchange(django_application, "OPTIONS", search, preflight, b"")
        assert status == 200
        assert (b"access-control-allow-origin", ORIGIN.encode()) in [
            (name.lower(), value) for name, value in headers
        ]
        bearer = {"Authorization": f"Bearer {credentials['token']}"}
        status, headers, _ = await exchange(django_application, "POST", search, bearer, b"{}")
        assert status == 200
        assert b"Set-Cookie" not in [name for name, _ in headers]
        assert [value for name, value in headers if name == b"Vary"] == [b"origin"]
    finally:
        await close_request_threads_connections()
