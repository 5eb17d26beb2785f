"""The front page, the API root, the docs' URL variants and the admin's branding."""

import json

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


def test_front_page_links_the_chat_page_the_api_its_docs_and_the_admin(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert settings.PROJECT_NAME in html
    for path in ("/playground/", "/api", "/api/docs", "/api/openapi.json", "/admin/"):
        assert f'href="{path}"' in html


def test_the_favicon_browsers_ask_for_on_every_page_is_no_content_not_a_404(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 204
    assert "max-age" in response["Cache-Control"]


def test_api_root_names_the_docs_and_the_schema(anonymous_api):
    response = anonymous_api.get("/api/")
    assert response.status_code == 200
    assert json.loads(response.content) == {
        "name": settings.PROJECT_NAME,
        "docs": "/api/docs",
        "openapi": "/api/openapi.json",
        "info": "/api/info",
    }


def test_api_without_a_trailing_slash_redirects_to_the_api_root(anonymous_api):
    response = anonymous_api.get("/api")
    assert response.status_code == 302
    assert response["Location"] == "/api/"


@pytest.mark.parametrize("path", ["/api/docs", "/api/docs/"])
def test_docs_answer_with_and_without_a_trailing_slash(anonymous_api, path):
    response = anonymous_api.get(path)
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_admin_carries_the_project_name_and_links_back_to_the_front_page(client):
    staff = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-12345!")
    client.force_login(staff)
    html = client.get("/admin/").content.decode()
    assert settings.PROJECT_NAME in html
    assert '<a href="/">View site</a>' in html
