"""The test infrastructure itself: live daphne servers and subprocesses share the test database."""

from collections.abc import Callable
from subprocess import CompletedProcess
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model

from tests.fixtures import token_for
from tests.live import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_live_server_answers_ok(daphne_server: LiveServer) -> None:
    response = httpx.get(daphne_server.api_url + "/ok", trust_env=False)

    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_subprocesses_see_the_test_database(
    manage_py: Callable[..., CompletedProcess[str]],
) -> None:
    get_user_model().objects.create_user(username="infrastructure-probe")

    result = manage_py(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "print(get_user_model().objects.filter(username='infrastructure-probe').count())",
    )

    assert result.stdout.strip() == "1"


def test_live_server_uses_the_test_database(daphne_server: LiveServer, user: Any) -> None:
    # The token exists only in the test database: a server on any other database answers 401.
    response = httpx.post(
        daphne_server.api_url + "/threads/count",
        json={},
        headers={"Authorization": f"Bearer {token_for(user)}"},
        trust_env=False,
    )

    assert response.status_code == 200, response.text
    assert response.json() == 0
