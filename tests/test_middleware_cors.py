"""The project's CORS middleware (deerflow_site/middleware.py) answers what corsheaders' own does,
header for header, with or without an Origin; and an API path and an admin page each still get
their middleware's effects through the served ASGI application."""

from collections.abc import Callable
from typing import Any

import pytest
from corsheaders.middleware import CorsMiddleware as StockCorsMiddleware
from django.http import HttpResponse
from django.test import AsyncClient, RequestFactory

from deerflow_site.middleware import CorsMiddleware

ALLOWED = "http://localhost:3000"  # tests/settings.py's CORS_ALLOWED_ORIGINS


def requests() -> list[tuple[str, Callable[[], Any]]]:
    factory = RequestFactory()
    preflight = {"HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"}
    return [
        ("api, no origin", lambda: factory.post("/api/threads", {})),
        ("api, allowed origin", lambda: factory.post("/api/threads", {}, HTTP_ORIGIN=ALLOWED)),
        ("api, other origin", lambda: factory.get("/api/threads", HTTP_ORIGIN="http://evil.test")),
        ("api, empty origin", lambda: factory.get("/api/threads", HTTP_ORIGIN="")),
        ("api, bad origin", lambda: factory.get("/api/threads", HTTP_ORIGIN="http://[::1")),
        ("api, null origin", lambda: factory.get("/api/threads", HTTP_ORIGIN="null")),
        ("preflight", lambda: factory.options("/api/threads", HTTP_ORIGIN=ALLOWED, **preflight)),
        ("preflight, no origin", lambda: factory.options("/api/threads", **preflight)),
        ("options, no origin", lambda: factory.options("/api/threads")),
        ("admin, no origin", lambda: factory.get("/admin/")),
        ("admin, allowed origin", lambda: factory.get("/admin/", HTTP_ORIGIN=ALLOWED)),
    ]


@pytest.mark.parametrize("name,make", requests(), ids=[name for name, _ in requests()])
def test_the_cors_middleware_answers_as_corsheaders_does(name: str, make: Any) -> None:
    def view(request: Any) -> HttpResponse:
        response = HttpResponse("ok")
        response["Vary"] = "Accept"
        return response

    ours = CorsMiddleware(view)(make())
    stock = StockCorsMiddleware(view)(make())
    assert ours.status_code == stock.status_code
    assert sorted(ours.items()) == sorted(stock.items())


@pytest.mark.django_db(transaction=True)
async def test_an_api_path_gets_its_middlewares_effects() -> None:
    client = AsyncClient()
    response = await client.get("/api/ok")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert "origin" in response["Vary"].lower()
    assert "access-control-allow-origin" not in response
    cross = await client.get("/api/ok", headers={"Origin": ALLOWED})
    assert cross["Access-Control-Allow-Origin"] == ALLOWED
    assert cross["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.django_db(transaction=True)
async def test_an_admin_page_gets_its_middlewares_effects() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    response = await client.get("/admin/login/")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "csrftoken" in response.cookies  # the login form's CSRF token
    refused = await client.post("/admin/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403  # no CSRF token: CsrfViewMiddleware refuses
