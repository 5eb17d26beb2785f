"""The threads API through Django's test client: success and error paths of every endpoint."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError
from guardian.shortcuts import assign_perm

from runs.models import Run
from threads.exceptions import ThreadNotFound
from threads.models import Thread
from threads.services import change_owner, create_thread, update_thread

pytestmark = pytest.mark.django_db


def create(api, **body):
    response = api.post("/api/threads", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


# --- create ---------------------------------------------------------------------------------


def test_create_returns_an_idle_thread_owned_by_the_caller(api, user):
    thread = create(api, metadata={"topic": "x"})
    assert thread["status"] == "idle"
    assert thread["metadata"] == {"topic": "x"}
    assert thread["values"] is None
    assert thread["interrupts"] == {}
    uuid.UUID(thread["thread_id"])
    assert thread["created_at"].endswith("Z") or "+" in thread["created_at"]
    assert Thread.objects.get(pk=thread["thread_id"]).owner == user


def test_create_with_a_given_id_keeps_it(api):
    assert create(api, thread_id="my-thread_1")["thread_id"] == "my-thread_1"


def test_create_existing_id_with_raise_is_409(api):
    create(api, thread_id="t1")
    response = api.post("/api/threads", {"thread_id": "t1"}, format="json")
    assert response.status_code == 409
    assert "detail" in response.json()


def test_create_existing_id_with_do_nothing_returns_the_stored_thread(api):
    first = create(api, thread_id="t1", metadata={"a": 1})
    again = create(api, thread_id="t1", metadata={"b": 2}, if_exists="do_nothing")
    assert again == first


def test_create_with_another_users_id_is_409_even_with_do_nothing(api, other_api):
    create(other_api, thread_id="theirs")
    response = api.post(
        "/api/threads", {"thread_id": "theirs", "if_exists": "do_nothing"}, format="json"
    )
    assert response.status_code == 409
    assert Thread.objects.get(pk="theirs").metadata == {}


@pytest.mark.django_db(transaction=True)  # SQLite checks foreign keys at commit
def test_a_create_failing_on_another_constraint_is_not_reported_as_an_existing_id():
    owner_gone = get_user_model()(pk=987_654_321, username="deleted-meanwhile")  # no row

    with pytest.raises(IntegrityError):
        create_thread(user=owner_gone, thread_id="fresh-id")
    assert not Thread.objects.filter(pk="fresh-id").exists()


@pytest.mark.parametrize("bad_id", ["has space", "x" * 65, "a/b", "", "ünï"])
def test_create_with_a_bad_id_is_422_naming_the_field(api, bad_id):
    response = api.post("/api/threads", {"thread_id": bad_id}, format="json")
    assert response.status_code == 422
    assert "thread_id" in response.json()["detail"]
    assert Thread.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("metadata", [1, 2]), ("metadata", "text"), ("if_exists", "replace"), ("ttl", -5)],
)
def test_create_with_a_wrong_type_is_422_naming_the_field(api, field, value):
    response = api.post("/api/threads", {field: value}, format="json")
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert Thread.objects.count() == 0


def test_create_strips_owner_and_user_ids_from_metadata(api):
    thread = create(api, metadata={"owner_id": "x", "user_id": "y", "keep": True})
    assert thread["metadata"] == {"keep": True}


def test_create_ignores_unknown_fields(api):
    thread = create(api, metadata={"a": 1}, some_future_field={"x": 1})
    assert thread["metadata"] == {"a": 1}


def test_create_with_ttl_sets_an_expiry(api):
    thread = create(api, ttl={"ttl": 5, "strategy": "delete"})
    assert Thread.objects.get(pk=thread["thread_id"]).expires_at is not None


def test_malformed_json_is_422(api):
    response = api.post("/api/threads", "{not json", content_type="application/json")
    assert response.status_code == 422
    assert "Malformed JSON" in response.json()["detail"]


def test_a_json_body_that_is_not_an_object_is_422(api):
    response = api.post("/api/threads", [1, 2], format="json")
    assert response.status_code == 422


# --- get ----------------------------------------------------------------------------------


def test_get_returns_the_thread(api):
    thread = create(api)
    response = api.get(f"/api/threads/{thread['thread_id']}")
    assert response.status_code == 200
    assert response.json() == thread


def test_get_unknown_thread_is_404(api):
    response = api.get("/api/threads/does-not-exist")
    assert response.status_code == 404
    assert response.json() == {"detail": "Thread not found."}


def test_get_bad_thread_id_is_422(api):
    assert api.get("/api/threads/bad%20id").status_code == 422


# --- patch --------------------------------------------------------------------------------


def test_patch_merges_metadata(api):
    thread = create(api, metadata={"a": 1, "b": 2})
    response = api.patch(
        f"/api/threads/{thread['thread_id']}", {"metadata": {"b": 3, "c": 4}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["metadata"] == {"a": 1, "b": 3, "c": 4}


def test_patch_with_wrong_metadata_type_is_422_and_changes_nothing(api):
    thread = create(api, metadata={"a": 1})
    response = api.patch(f"/api/threads/{thread['thread_id']}", {"metadata": 5}, format="json")
    assert response.status_code == 422
    assert Thread.objects.get(pk=thread["thread_id"]).metadata == {"a": 1}


def test_patch_unknown_thread_is_404(api):
    response = api.patch("/api/threads/nope", {"metadata": {}}, format="json")
    assert response.status_code == 404


# --- delete -------------------------------------------------------------------------------


def test_delete_removes_the_thread_and_its_runs(api):
    thread = create(api)
    Run.objects.create(
        thread_id=thread["thread_id"],
        assistant_id=uuid.uuid4(),
        graph_id="agent",
        status="success",
        run_at="2026-01-01T00:00:00Z",
    )
    response = api.delete(f"/api/threads/{thread['thread_id']}")
    assert response.status_code == 204
    assert not Thread.objects.filter(pk=thread["thread_id"]).exists()
    assert not Run.objects.exists()


@pytest.mark.parametrize("status", ["pending", "running"])
def test_delete_while_a_run_is_active_is_409_and_keeps_the_thread(api, status):
    thread = create(api)
    Run.objects.create(
        thread_id=thread["thread_id"],
        assistant_id=uuid.uuid4(),
        graph_id="agent",
        status=status,
        run_at="2026-01-01T00:00:00Z",
    )
    response = api.delete(f"/api/threads/{thread['thread_id']}")
    assert response.status_code == 409
    assert Thread.objects.filter(pk=thread["thread_id"]).exists()


def test_delete_unknown_thread_is_404(api):
    assert api.delete("/api/threads/nope").status_code == 404


# --- search and count ---------------------------------------------------------------------


def test_search_matches_metadata_by_containment(api):
    create(api, thread_id="a", metadata={"team": "x", "tags": {"lang": "en", "n": 1}})
    create(api, thread_id="b", metadata={"team": "y"})
    found = api.post(
        "/api/threads/search", {"metadata": {"tags": {"lang": "en"}}}, format="json"
    ).json()
    assert [t["thread_id"] for t in found] == ["a"]
    found = api.post("/api/threads/search", {"metadata": {"team": "y"}}, format="json").json()
    assert [t["thread_id"] for t in found] == ["b"]


QUOTED = 'say "hi"'  # a key SQLite's JSON paths cannot name


@pytest.mark.parametrize(
    ("stored", "matching", "not_matching"),
    [
        ({QUOTED: "v"}, {QUOTED: "v"}, {QUOTED: "w"}),
        ({"a": {QUOTED: 1}}, {"a": {QUOTED: 1}}, {"a": {QUOTED: "1"}}),
        ({QUOTED: {"b": [1, 2]}}, {QUOTED: {"b": [1, 2]}}, {QUOTED: {"b": [3]}}),
        ({QUOTED: None, "x": 1}, {QUOTED: None, "x": 1}, {QUOTED: False}),
        ({QUOTED: True}, {QUOTED: True}, {QUOTED: 1}),
        ({QUOTED: 1.5}, {QUOTED: 1.5}, {QUOTED: None}),
        ({QUOTED: "text"}, {QUOTED: "text"}, {QUOTED: {"text": 1}}),
        ({'"': {'"': "q"}}, {'"': {'"': "q"}}, {'"': "q"}),
    ],
)
def test_search_matches_metadata_keys_holding_a_double_quote(api, stored, matching, not_matching):
    create(api, thread_id="quoted", metadata=stored)
    create(api, thread_id="other", metadata={"a": {"b": 1}, "x": 1})

    def found(metadata):
        response = api.post("/api/threads/search", {"metadata": metadata}, format="json")
        assert response.status_code == 200, response.content
        return [t["thread_id"] for t in response.json()]

    assert found(matching) == ["quoted"]
    assert found(not_matching) == []
    count = api.post("/api/threads/count", {"metadata": matching}, format="json")
    assert count.json() == 1


def test_search_filters_by_ids_and_status(api):
    create(api, thread_id="a")
    create(api, thread_id="b")
    Thread.objects.filter(pk="b").update(status="error")
    found = api.post("/api/threads/search", {"ids": ["a", "b"], "status": "error"}, format="json")
    assert [t["thread_id"] for t in found.json()] == ["b"]


def test_search_sorts_and_pages_with_pagination_headers(api):
    for name in ["c", "a", "b"]:
        create(api, thread_id=name)
    response = api.post(
        "/api/threads/search",
        {"sort_by": "thread_id", "sort_order": "asc", "limit": 2, "offset": 0},
        format="json",
    )
    assert [t["thread_id"] for t in response.json()] == ["a", "b"]
    assert response["X-Pagination-Total"] == "3"
    assert response["X-Pagination-Next"] == "2"
    response = api.post(
        "/api/threads/search",
        {"sort_by": "thread_id", "sort_order": "asc", "limit": 2, "offset": 2},
        format="json",
    )
    assert [t["thread_id"] for t in response.json()] == ["c"]
    assert response["X-Pagination-Total"] == "3"
    assert not response.has_header("X-Pagination-Next")


def test_search_select_returns_only_the_chosen_fields(api):
    create(api, thread_id="a")
    response = api.post("/api/threads/search", {"select": ["thread_id", "status"]}, format="json")
    assert response.json() == [{"thread_id": "a", "status": "idle"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"limit": "ten"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort_by": "owner"}, "sort_by"),
        ({"metadata": "x"}, "metadata"),
        ({"ids": ["bad id"]}, "ids"),
    ],
)
def test_search_with_bad_filters_is_422_naming_the_field(api, body, field):
    response = api.post("/api/threads/search", body, format="json")
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_count_counts_matching_visible_threads(api, other_api):
    create(api, metadata={"k": 1})
    create(api, metadata={"k": 2})
    create(other_api, metadata={"k": 1})
    assert api.post("/api/threads/count", {}, format="json").json() == 2
    assert api.post("/api/threads/count", {"metadata": {"k": 1}}, format="json").json() == 1


# --- ownership and sharing ------------------------------------------------------------------


def test_another_users_thread_is_404_on_every_endpoint(api, other_api):
    thread_id = create(other_api)["thread_id"]
    assert api.get(f"/api/threads/{thread_id}").status_code == 404
    assert (
        api.patch(f"/api/threads/{thread_id}", {"metadata": {}}, format="json").status_code == 404
    )
    assert api.delete(f"/api/threads/{thread_id}").status_code == 404
    assert api.post("/api/threads/search", {}, format="json").json() == []
    assert api.post("/api/threads/count", {}, format="json").json() == 0
    assert Thread.objects.filter(pk=thread_id).exists()


def test_sharing_with_a_user_lets_them_view_but_not_change(api, other_api, other_user):
    thread_id = create(api)["thread_id"]
    assign_perm("view_thread", other_user, Thread.objects.get(pk=thread_id))
    assert other_api.get(f"/api/threads/{thread_id}").status_code == 200
    assert [
        t["thread_id"] for t in other_api.post("/api/threads/search", {}, format="json").json()
    ] == [thread_id]
    response = other_api.patch(f"/api/threads/{thread_id}", {"metadata": {"x": 1}}, format="json")
    assert response.status_code == 403
    assert other_api.delete(f"/api/threads/{thread_id}").status_code == 403


def test_sharing_with_a_group_lets_its_members_view_and_change(api, other_api, other_user):
    from django.contrib.auth.models import Group

    thread_id = create(api)["thread_id"]
    group = Group.objects.create(name="team")
    other_user.groups.add(group)
    thread = Thread.objects.get(pk=thread_id)
    assign_perm("view_thread", group, thread)
    assign_perm("change_thread", group, thread)
    response = other_api.patch(f"/api/threads/{thread_id}", {"metadata": {"x": 1}}, format="json")
    assert response.status_code == 200
    assert other_api.post("/api/threads/count", {}, format="json").json() == 1


def test_staff_with_the_model_permission_see_every_thread(api, make_user):
    from django.contrib.auth.models import Permission

    from tests.fixtures import client_for

    create(api)
    staff = make_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_thread"))
    assert client_for(staff).post("/api/threads/count", {}, format="json").json() == 1


def test_a_user_without_the_threads_write_scope_gets_403(api, user):
    from django.contrib.auth.models import Group

    user.groups.remove(Group.objects.get(name="api-users"))
    response = api.post("/api/threads", {}, format="json")
    assert response.status_code == 403
    assert Thread.objects.count() == 0


@pytest.mark.parametrize("change", ["metadata", "owner"])
def test_a_thread_deleted_after_it_was_read_is_not_found_by_its_changes(
    user, other_user, change
) -> None:
    # A PATCH read the thread (its rights), then a DELETE went in first: was a DoesNotExist, a
    # 500 (4 in 60 PATCH + DELETE pairs over HTTP); the admin's change of owner likewise.
    thread, _ = create_thread(user=user, thread_id=str(uuid.uuid4()))
    Thread.objects.filter(pk=thread.pk).delete()

    with pytest.raises(ThreadNotFound):
        if change == "metadata":
            update_thread(thread=thread, metadata={"a": 1})
        else:
            change_owner(thread=thread, owner=other_user)

    assert not Thread.objects.exists()
