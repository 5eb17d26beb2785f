"""A request body is JSON only when it says so: any other media type is a 415 that changes
nothing, on every endpoint, DRF's and the async ones alike.

A page of another site can POST a `text/plain` or form body without a CORS preflight, and in the
local mode every request acts as the local user: such a body must never start, cancel or change
anything."""

import json

import pytest

from runs.models import Run
from tests.test_request_bounds import api_routes, concrete, stored

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads

#: What a browser sends without asking first (CORS "simple" requests), and no type at all.
NOT_JSON = [
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
]


@pytest.fixture
def existing(api) -> tuple[str, str]:
    """A thread with one run that waits (after_seconds) until the test ends."""
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    body = {"assistant_id": "echo", "after_seconds": 3600, "multitask_strategy": "enqueue"}
    run = api.post(f"/api/threads/{thread_id}/runs", body, format="json")
    return thread_id, run.json()["run_id"]


@pytest.mark.parametrize("content_type", NOT_JSON)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_body_that_is_not_json_is_415_on_every_endpoint(
    api, existing, method, content_type
) -> None:
    before = stored()
    thread_id, run_id = existing
    # A valid JSON body for the run endpoints: only its media type is wrong.
    body = json.dumps(
        {"assistant_id": "echo", "status": "all", "values": {}, "rating": 1, "metadata": {}}
    )
    api.raise_request_exception = False
    answers = {}
    for route in api_routes():
        path = concrete(route, thread_id, run_id)
        response = api.generic(method, path, body, content_type=content_type)
        answers[path] = response.status_code
        # 403: a staff-only route refuses before reading the body; 405: no such method
        assert response.status_code in (403, 405, 415), (path, response.content)
        assert "json" in response["Content-Type"], path

    assert 415 in answers.values()
    assert stored() == before
    assert Run.objects.get(pk=run_id).status == Run.Status.PENDING


@pytest.mark.parametrize(
    "path, body, status",
    [
        # A DRF view: the thread is made.
        ("/api/threads", "{}", 200),
        # An async view (`json_body`): the body is read as JSON, whose assistant is unknown (a
        # known one would start a run, whose /wait body the test client cannot read).
        ("/api/runs/wait", '{"assistant_id": "no-such-assistant", "input": {}}', 422),
    ],
)
def test_a_json_body_with_a_charset_is_still_json(api, path, body, status) -> None:
    response = api.generic("POST", path, body, content_type="application/json; charset=utf-8")

    assert response.status_code == status, response.content
    if status == 422:
        assert "no-such-assistant" in str(response.json()["detail"]["assistant_id"])
    assert not Run.objects.exists()
