"""Lists in request bodies are bounded (MAX_LIST_ITEMS, a 422 before any item is read) and ids
that can never name a thread or run are 422s that change nothing: thread search, count and prune,
bulk cancel; and every list field of every request serializer is bounded."""

import uuid
from typing import Any

import pytest
from rest_framework import serializers

from deerflow_site.api.serializers import MAX_LIST_ITEMS, BoundedListField, RequestSerializer

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads

TOO_MANY = MAX_LIST_ITEMS + 1
#: (path, body field, a valid id, ids that can never name one, a body besides)
ID_LISTS = [
    ("/api/threads/search", "ids", "t-1", ["a b", "x" * 65, "search", "", 7, None], {}),
    ("/api/threads/count", "ids", "t-1", ["a/b", "é", "prune", "", 7.5, {}], {}),
    ("/api/threads/prune", "thread_ids", "t-1", ["a b", "x" * 65, "count", "", 1], {}),
    (
        "/api/runs/cancel",
        "run_ids",
        str(uuid.uuid4()),
        ["not-a-uuid", "{" + str(uuid.uuid4()) + "}", "", 3],
        {"thread_id": "t-1"},
    ),
]


@pytest.fixture(autouse=True)
def thread(api: Any) -> None:
    response = api.post("/api/threads", {"thread_id": "t-1"}, format="json")
    assert response.status_code == 200, response.content


def _subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *_subclasses(direct)}}


@pytest.mark.parametrize(("path", "field", "valid", "bad", "extra"), ID_LISTS)
def test_a_list_of_ids_holds_at_most_the_limit(api, path, field, valid, bad, extra) -> None:
    too_many = api.post(path, {**extra, field: [valid] * TOO_MANY}, format="json")
    assert too_many.status_code == 422, too_many.content
    assert field in too_many.json()["detail"]
    at_the_limit = api.post(path, {**extra, field: [valid] * MAX_LIST_ITEMS}, format="json")
    assert at_the_limit.status_code != 422, at_the_limit.content  # (the run: a 404)


@pytest.mark.parametrize(("path", "field", "valid", "bad", "extra"), ID_LISTS)
def test_an_id_that_can_never_name_one_is_a_422(api, path, field, valid, bad, extra) -> None:
    for value in bad:
        response = api.post(path, {**extra, field: [valid, value]}, format="json")
        assert response.status_code == 422, (value, response.content)
        assert field in response.json()["detail"], value
    assert api.get("/api/threads/t-1").status_code == 200  # a prune of it changed nothing


def test_every_list_of_a_request_is_bounded() -> None:
    import deerflow_site.urls  # noqa: F401  (every view's serializers)

    unbounded = [
        f"{serializer.__module__}.{serializer.__name__}.{name}"
        for serializer in _subclasses(RequestSerializer)
        for name, field in serializer().fields.items()
        if isinstance(field, serializers.ListField) and not isinstance(field, BoundedListField)
    ]
    assert unbounded == []
