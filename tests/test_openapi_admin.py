"""The OpenAPI schema and docs page, and the admin where staff browse threads."""

import json

import pytest
from django.contrib.auth import get_user_model

from threads.models import Thread

pytestmark = pytest.mark.django_db


def test_openapi_schema_describes_thread_request_and_response_bodies(anonymous_api):
    response = anonymous_api.get("/api/openapi.json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    create = schema["paths"]["/api/threads"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][body_ref.rsplit("/", 1)[-1]]
    assert {"thread_id", "metadata", "if_exists", "ttl"} <= body["properties"].keys()
    assert body["properties"]["if_exists"]
    reply_ref = create["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    reply = schema["components"]["schemas"][reply_ref.rsplit("/", 1)[-1]]
    assert {"thread_id", "status", "values", "interrupts", "metadata"} <= reply["properties"].keys()
    assert "/api/threads/search" in schema["paths"]
    assert "/api/threads/{thread_id}" in schema["paths"]


def test_interactive_docs_page_is_served(anonymous_api):
    response = anonymous_api.get("/api/docs")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"cdn." not in response.content  # served from the installed package, works offline
    assert (
        anonymous_api.get(
            "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"
        ).status_code
        == 200
    )


@pytest.fixture
def staff_client(client):
    staff = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-12345!")
    client.force_login(staff)
    return client


def test_admin_lists_and_searches_threads_by_id_owner_and_metadata(staff_client, user):
    Thread.objects.create(thread_id="alpha", owner=user, metadata={"project": "apollo"})
    Thread.objects.create(thread_id="beta", owner=user, metadata={"project": "gemini"})
    page = staff_client.get("/admin/threads/thread/")
    assert page.status_code == 200
    assert b"alpha" in page.content and b"beta" in page.content
    by_metadata = staff_client.get("/admin/threads/thread/", {"q": "gemini"})
    assert b"beta" in by_metadata.content and b"alpha" not in by_metadata.content
    by_owner = staff_client.get("/admin/threads/thread/", {"q": user.username})
    assert b"alpha" in by_owner.content


def test_admin_shows_the_object_permissions_page_of_a_thread(staff_client, user):
    Thread.objects.create(thread_id="alpha", owner=user)
    page = staff_client.get("/admin/threads/thread/alpha/permissions/")
    assert page.status_code == 200
