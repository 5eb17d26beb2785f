"""The site's front page: where a newcomer finds the API, its docs and the admin."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

# The chat page, linked once an app serves it.
CHAT_PAGE_PATH = "/playground/"


def site_links() -> list[dict[str, str]]:
    """What the server serves, for people: [{"name", "path", "description"}], paths from the root.

    The chat page is listed only while a view serves CHAT_PAGE_PATH.
    """
    prefix = settings.API_PREFIX
    links = [
        {"name": "API", "path": prefix, "description": "the LangGraph Platform HTTP API"},
        {"name": "API docs", "path": f"{prefix}/docs", "description": "interactive OpenAPI page"},
        {"name": "OpenAPI schema", "path": f"{prefix}/openapi.json", "description": "OpenAPI 3"},
        {"name": "admin", "path": "/admin/", "description": "threads, runs, users and tokens"},
    ]
    if _is_served(CHAT_PAGE_PATH):
        links.insert(0, {"name": "chat", "path": CHAT_PAGE_PATH, "description": "talk to a graph"})
    return links


def _is_served(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.url_name != "api-not-found"


def favicon(request: HttpRequest) -> HttpResponse:
    """GET /favicon.ico, which every browser asks for on every page: no icon (204), kept a day,
    instead of a 404 that each page's console shows as an error."""
    response = HttpResponse(status=204)
    response["Cache-Control"] = "public, max-age=86400"
    return response


def front_page(request: HttpRequest) -> HttpResponse:
    """GET /: a small HTML page linking to the chat page, the API, its docs and the admin."""
    return render(
        request,
        "deerflow_site/front.html",
        {"project_name": settings.PROJECT_NAME, "links": site_links()},
    )
