"""The playground's page as Django serves it, and its committed bundle (issue 11, item 10).

What it does in a browser is tests/test_playground_browser.py.
"""

import json
import re
import subprocess

import pytest
from django.test import Client

from tests.live import REPO_ROOT

BUNDLE = REPO_ROOT / "playground" / "static" / "playground" / "playground.js"


def _page_settings(html: str) -> dict:
    match = re.search(
        r'<script id="playground-settings" type="application/json">(.*?)</script>', html
    )
    assert match, "the page carries its settings"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_page_gives_the_api_prefix_csrf_token_and_login_url():
    client = Client(enforce_csrf_checks=True)
    response = client.get("/playground/?assistant=agent")
    assert response.status_code == 200
    settings = _page_settings(response.content.decode())
    assert settings["apiPrefix"] == "/api"
    assert settings["csrfToken"]
    assert "csrftoken" in response.cookies
    assert settings["loginUrl"] == "/admin/login/?next=/playground/%3Fassistant%3Dagent"


@pytest.mark.django_db
def test_page_loads_only_its_own_assets():
    html = Client().get("/playground/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/playground/playground.js" in sources
    assert all(source.startswith(("/", "data:")) for source in sources), sources
    assert Client().get("/static/playground/playground.js").status_code == 200


@pytest.mark.django_db
def test_page_answers_only_safe_methods():
    response = Client().post("/playground/")
    assert response.status_code == 405


def test_committed_bundle_is_the_build_of_its_sources(node_executable):
    result = subprocess.run(
        [node_executable, "playground/frontend/build.mjs", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert BUNDLE.stat().st_size > 0
