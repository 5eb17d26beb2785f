"""A number where a request expects a string is a 422 naming the field, never text made of it:
in every request serializer, and through the endpoints that took one (feedback, a state
update's `as_node`, an assistant search)."""

import httpx
import pytest
from rest_framework import serializers

import deerflow_site.urls  # noqa: F401 - imports every view, so every request serializer
from deerflow_site.api.serializers import RequestSerializer
from feedback.models import Feedback

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _coercing_fields(serializer: serializers.Serializer, prefix: str = "") -> list[str]:
    """Names of the writable fields that would turn a number into text."""
    found = []
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        for part, inner in ((name, field), (f"{name}[]", getattr(field, "child", None))):
            if type(inner) is serializers.CharField:
                found.append(prefix + part)
            if isinstance(inner, serializers.Serializer):
                found += _coercing_fields(inner, prefix=f"{prefix}{part}.")
    return found


def test_no_request_serializer_turns_a_number_into_a_string() -> None:
    coercing = {
        cls.__qualname__: fields
        for cls in _subclasses(RequestSerializer)
        if (fields := _coercing_fields(cls()))
    }

    assert coercing == {}, "use StrictCharField"


@pytest.fixture
def finished_run(daphne_server, headers) -> tuple[str, str]:
    """A thread and its run, executed to its end by a live server's worker: its /wait answer read
    in full (the Django test client cannot read a /wait body, an async stream)."""
    with httpx.Client(
        base_url=daphne_server.api_url, headers=headers, trust_env=False, timeout=60
    ) as live:
        thread_id = live.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]}}
        answer = live.post(f"/threads/{thread_id}/runs/wait", json=body).json()
        assert answer["messages"][-1]["content"] == "echo: hi", answer
        run_id = live.get(f"/threads/{thread_id}/runs").json()[0]["run_id"]
    return thread_id, run_id


@pytest.mark.live
@pytest.mark.parametrize("field", ["comment", "message_id"])
@pytest.mark.parametrize("method", ["put", "post"])
def test_a_number_for_a_feedback_text_is_422(api, finished_run, field, method) -> None:
    thread_id, run_id = finished_run

    response = getattr(api, method)(
        f"/api/threads/{thread_id}/runs/{run_id}/feedback", {"rating": 1, field: 5}, format="json"
    )

    assert response.status_code == 422, response.content
    assert field in response.json()["detail"]
    assert not Feedback.objects.exists()


@pytest.mark.live
def test_a_number_for_as_node_is_422(api, finished_run) -> None:
    thread_id, _ = finished_run
    before = api.get(f"/api/threads/{thread_id}/state").json()["checkpoint"]

    response = api.post(
        f"/api/threads/{thread_id}/state", {"values": {}, "as_node": 5}, format="json"
    )

    assert response.status_code == 422, response.content
    assert response.json()["detail"]["as_node"] == ["Must be a string."]
    assert api.get(f"/api/threads/{thread_id}/state").json()["checkpoint"] == before


@pytest.mark.parametrize("field", ["graph_id", "name"])
def test_a_number_in_an_assistant_search_is_422(api, field) -> None:
    response = api.post("/api/assistants/search", {field: 5}, format="json")

    assert response.status_code == 422, response.content
    assert field in response.json()["detail"]
