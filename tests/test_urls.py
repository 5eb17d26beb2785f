"""The API's URL patterns are one flat list: resolving a path tries patterns, and never fails an
include (which raises and lists its patterns for the error) on the way to a later app's path."""

from django.urls import URLResolver, resolve

from deerflow_site.urls import api_patterns


def test_the_api_patterns_include_nothing():
    assert not [p for p in api_patterns if isinstance(p, URLResolver)]


def test_every_app_path_resolves_to_its_view():
    thread = "8f0c8e56-6a8f-4b0f-9d36-1c1f2f3b4a5c"
    expected = {
        "/api/threads": "threads",
        f"/api/threads/{thread}": "thread",
        f"/api/threads/{thread}/runs/wait": "thread-runs-wait",
        f"/api/threads/{thread}/runs/stream": "thread-runs-stream",
        f"/api/threads/{thread}/stream": "thread-stream",
        f"/api/threads/{thread}/state": "thread-state",
        "/api/runs/wait": "runs-wait",
        "/api/assistants/search": "assistants-search",
        "/api/nothing/here": "api-not-found",
    }
    assert {path: resolve(path).url_name for path in expected} == expected
