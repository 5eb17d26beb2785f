"""Any HTTP method on any page of the site, the API's and the others (front page, playground,
API docs, admin), is answered without a server error, by a signed-in client and an anonymous one;
under the API prefix the answer is JSON (the docs page's own HTML aside)."""

import pytest

from tests.fixtures import client_for
from tests.test_request_bounds import api_routes, concrete, stored

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads

#: Pages outside the API's path-converter routes: regex routes, the API's root and catch-all.
OTHER_PAGES = [
    "/",
    "/playground/",
    "/api",
    "/api/",
    "/api/docs",
    "/api/docs/",
    "/api/openapi.json",
    "/api/no/such/route",
    "/admin/",
    "/admin/login/",
    "/static/admin/css/base.css",
]
HTML_PAGES = ("/api/docs",)


@pytest.fixture
def pages(api) -> list[str]:
    """Every page, the API's routes with a real thread and run in them."""
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    body = {"assistant_id": "echo", "after_seconds": 3600}
    run_id = api.post(f"/api/threads/{thread_id}/runs", body, format="json").json()["run_id"]
    return [concrete(route, thread_id, run_id) for route in api_routes()] + OTHER_PAGES


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("signed_in", [True, False], ids=["user", "anonymous"])
def test_every_page_answers_every_method_without_a_server_error(
    pages, user, anonymous_api, method, signed_in
) -> None:
    client = client_for(user) if signed_in else anonymous_api
    client.raise_request_exception = False
    before = stored()
    for page in pages:
        response = client.generic(method, page)

        assert response.status_code < 500, (method, page, response.status_code)
        api_json = page.startswith("/api/") and not page.startswith(HTML_PAGES)
        if api_json and method != "HEAD" and response.status_code != 204:
            assert "json" in response["Content-Type"], (method, page)
    assert stored() == before


def test_options_on_the_api_docs_names_its_methods(anonymous_api) -> None:
    response = anonymous_api.options("/api/docs")

    assert response.status_code == 200
    assert "GET" in response["Allow"]


def test_head_answers_as_get_without_the_body_where_get_does_not_stream(api, pages) -> None:
    api.raise_request_exception = False
    streaming = ("/join", "/stream")
    answered = 0
    for page in pages:
        if not page.startswith("/api/") or page.startswith(HTML_PAGES):
            continue
        head = api.head(page)
        if page.endswith(streaming):
            assert head.status_code == 405, page  # a HEAD would open the stream
            assert "HEAD" not in head["Allow"], page
            continue
        get = api.get(page)
        if get.status_code == 405:
            assert head.status_code == 405, page
            continue
        assert (head.status_code, head["Content-Type"]) == (get.status_code, get["Content-Type"])
        assert head.content == b"", page
        answered += 1
    assert answered > 10
