"""Credentials: tokens (Bearer, X-Api-Key), session login with CSRF, and the local mode guard."""

import os
import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from tests.fixtures import token_for
from threads.models import Thread

pytestmark = pytest.mark.django_db

THREAD_ENDPOINTS = [
    ("post", "/api/threads"),
    ("post", "/api/threads/search"),
    ("post", "/api/threads/count"),
    ("get", "/api/threads/some-id"),
    ("patch", "/api/threads/some-id"),
    ("delete", "/api/threads/some-id"),
]


@pytest.mark.parametrize(("method", "path"), THREAD_ENDPOINTS)
def test_no_credentials_is_401_json(anonymous_api, method, path):
    response = getattr(anonymous_api, method)(path, {}, format="json")
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "header",
    [
        {"HTTP_AUTHORIZATION": "Bearer not-a-token"},
        {"HTTP_X_API_KEY": "not-a-token"},
        {"HTTP_AUTHORIZATION": "Bearer"},
        # PostgreSQL cannot take a NUL in a text parameter: the token's lookup was a 500 there.
        {"HTTP_AUTHORIZATION": "Bearer a\x00b"},
        {"HTTP_X_API_KEY": "a\x00b"},
    ],
)
def test_bad_credentials_are_401(header):
    client = APIClient(raise_request_exception=False)
    client.credentials(**header)
    response = client.post("/api/threads", {}, format="json")
    assert response.status_code == 401
    assert Thread.objects.count() == 0


def test_x_api_key_authenticates(user):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=token_for(user))
    response = client.post("/api/threads", {}, format="json")
    assert response.status_code == 200
    assert Thread.objects.get().owner == user


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/api/threads/some-id"])
@pytest.mark.parametrize("key", ["abcdefgh\x00ijk", "ABCDEFGH-not-one-of-ours"])
def test_a_session_cookie_no_session_has_is_no_session(path, key):
    """A session key of characters Django never puts in one is no session (a NUL in it made the
    session's lookup a 500 on PostgreSQL, on every page that reads the session)."""
    browser = APIClient(raise_request_exception=False)
    browser.cookies["sessionid"] = key

    response = browser.get(path)

    assert response.status_code in (200, 302, 401), response.content[:300]


def test_health_check_needs_no_credentials(anonymous_api):
    assert anonymous_api.get("/api/ok").json() == {"ok": True}


def test_session_login_needs_the_csrf_token_for_unsafe_methods(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/api/threads/count", {}, format="json").status_code == 403
    client.get("/admin/login/")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post("/api/threads", {}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200
    assert client.get(f"/api/threads/{response.json()['thread_id']}").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_drf_create_token_command_makes_a_working_token(user, manage_py):
    result = manage_py("drf_create_token", user.username)
    key = result.stdout.split()[2]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.post("/api/threads/count", {}, format="json").status_code == 200


def _settings_import(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with only `env` (plus a SECRET_KEY) set."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEERFLOW_", "DEBUG"))}
    return subprocess.run(
        [sys.executable, "-c", "import deerflow_site.settings as s; print(s.AUTH_MODE)"],
        env={**base, "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_local_mode_is_refused_when_debug_is_off():
    result = _settings_import({"DEBUG": "false", "DEERFLOW_AUTH_MODE": "local"})
    assert result.returncode != 0
    assert "DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION" in result.stderr


def test_local_mode_can_be_forced_in_production_explicitly():
    result = _settings_import(
        {
            "DEBUG": "false",
            "DEERFLOW_AUTH_MODE": "local",
            "DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION": "true",
        }
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "local"


def test_production_defaults_to_token_mode():
    result = _settings_import({"DEBUG": "false"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "token"


def test_debug_defaults_to_the_local_mode():
    result = _settings_import({"DEBUG": "true"})
    assert result.stdout.strip() == "local", result.stderr


@pytest.mark.django_db
def test_the_local_user_is_read_once_and_each_request_gets_its_own_copy(
    django_assert_num_queries, settings
):
    from django.contrib.auth import get_user_model

    from deerflow_site.api.authentication import _forget_local_user, local_user

    settings.PERMISSION_CACHE_SECONDS = 60
    try:
        first = local_user()  # created (or read) once
        with django_assert_num_queries(0):
            second = local_user()
        assert second == first and second is not first
        get_user_model().objects.filter(pk=first.pk).delete()  # forgotten at once
        third = local_user()
        assert third.pk != first.pk and third.username == first.username
    finally:
        _forget_local_user()  # the test database's rows go away with its transaction


@pytest.mark.django_db
def test_a_request_copy_of_a_user_is_what_copy_makes_and_its_own(user):
    import copy

    from deerflow_site.api.authentication import request_copy

    user.has_perm("runs.api_create_runs")  # caches on the object
    user._state.fields_cache["cached"] = object()
    reference, clone = copy.copy(user), request_copy(user)
    assert type(clone) is type(reference)
    # (copy.copy's pickling round trip also leaves the pickle's Django version behind)
    skip = {"_state", "_django_version"}
    assert {k: v for k, v in vars(clone).items() if k not in skip} == {
        k: v for k, v in vars(reference).items() if k not in skip
    }
    assert vars(clone._state) == vars(reference._state)
    assert clone._state is not user._state
    # What a request caches on its copy stays its own.
    clone._perm_cache = {"x.y"}
    clone._state.fields_cache["other"] = object()
    clone.first_name = "changed"
    assert user._perm_cache != {"x.y"} and "other" not in user._state.fields_cache
    assert user.first_name != "changed"
    clone.save(update_fields=["first_name"])  # a model that saves as any
    assert type(user).objects.get(pk=user.pk).first_name == "changed"
