"""Under the API prefix every answer is JSON, errors included; 401s carry WWW-Authenticate; an
anonymous /api/info tells nothing about versions or the deployment."""

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads


def assert_json_error(response, status: int) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_an_unknown_api_path_is_a_json_404_on_unsafe_methods_with_a_session(user, method) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    response = browser.generic(method, "/api/no/such/path", "{}", content_type="application/json")

    assert_json_error(response, 404)


@pytest.mark.parametrize(("method", "path"), [("POST", "/threads"), ("GET", "/assistants/agent")])
def test_an_api_path_at_the_root_is_a_json_404_naming_the_api_prefix(method, path) -> None:
    """The SDKs' docs point a client at the server's root (`langgraph dev` serves the API
    there); this server's answer says where the API is instead of an HTML page."""
    response = Client().generic(method, path, "{}", content_type="application/json")

    assert_json_error(response, 404)
    assert 'get_client(url="http://testserver/api")' in response.json()["detail"]


def test_a_session_write_without_a_csrf_token_is_a_json_403(user) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    response = browser.post("/api/threads", {}, content_type="application/json")

    assert_json_error(response, 403)


@pytest.mark.parametrize("path", ["/api/threads/t1/runs", "/api/threads/t1/state"])
def test_too_many_query_parameters_is_a_json_400(api, path) -> None:
    query = "&".join("limit=1" for _ in range(1200))  # one name repeated counts as many

    response = api.get(f"{path}?{query}")

    assert_json_error(response, 400)
    assert response.json() == {"detail": "Too many query parameters or form fields: at most 1000."}


@override_settings(ROOT_URLCONF="tests.urls_with_a_failing_view")
def test_a_server_error_under_the_api_prefix_is_json_and_elsewhere_html(api) -> None:
    api.raise_request_exception = False

    inside = api.get("/api/failing")
    outside = api.get("/failing")

    assert_json_error(inside, 500)
    assert "a bug" not in inside.json()["detail"]
    assert outside.status_code == 500
    assert outside["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/threads/t1"),  # a DRF view
        ("post", "/api/threads/search"),
        ("get", "/api/threads/t1/state"),  # an async view
        ("post", "/api/threads/t1/runs/stream"),
        ("post", "/api/runs/wait"),
    ],
)
def test_a_401_carries_www_authenticate(anonymous_api, method, path) -> None:
    for credentials in ({}, {"HTTP_AUTHORIZATION": "Bearer not-a-token"}):
        response = getattr(anonymous_api, method)(path, format="json", **credentials)

        assert_json_error(response, 401)
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_anonymous_info_shows_flags_only(anonymous_api) -> None:
    info = anonymous_api.get("/api/info").json()

    assert set(info) == {"flags"}


def test_signed_in_info_shows_versions_and_the_deployment(api) -> None:
    info = api.get("/api/info").json()

    for key in ("version", "langgraph_py_version", "database", "channel_layer", "agent_model"):
        assert key in info
