"""Thread ownership: the owner's guardian permissions written in one statement, visibility with
the owner column first, sharing with users and groups, racing creates of one id, and a database
flush under a live server (permission ids change; nothing may keep the old ones)."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.test.utils import CaptureQueriesContext
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import assign_perm, remove_perm

from deerflow_site.bridge import Executor, call_sync
from tests.fixtures import client_for, sdk_client, token_for
from threads.exceptions import ThreadExists
from threads.models import Thread, ThreadUserObjectPermission
from threads.ownership import OWNER_PERMISSIONS
from threads.serializers import ThreadSerializer, thread_data
from threads.services import change_owner, create_thread

pytestmark = pytest.mark.django_db

RACERS = 50


def owner_rows(thread_id: str) -> list[tuple[int, str]]:
    return sorted(
        ThreadUserObjectPermission.objects.filter(content_object_id=thread_id).values_list(
            "user_id", "permission__codename"
        )
    )


def test_a_new_thread_is_two_statements_and_its_owner_holds_the_guardian_permissions(user):
    with CaptureQueriesContext(connection) as queries:
        thread, created = create_thread(user=user, thread_id="mine")
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"].upper()]
    assert created
    assert len(statements) == 2, statements  # the row, and the three permissions at once
    checker = ObjectPermissionChecker(user)
    assert sorted(checker.get_perms(Thread.objects.get(pk="mine"))) == sorted(OWNER_PERMISSIONS)
    assert owner_rows("mine") == sorted((user.pk, p) for p in OWNER_PERMISSIONS)
    assert thread_data(thread) == thread_data(Thread.objects.get(pk="mine"))


def test_thread_data_renders_a_thread_as_the_serializer_does(user):
    thread, _ = create_thread(user=user, metadata={"k": [1, "x"]}, ttl_minutes=5)
    stored = Thread.objects.get(pk=thread.pk)
    stored.values = {"messages": [{"type": "ai", "content": "hé"}]}
    stored.error = {"error": "Boom", "message": "x"}
    stored.interrupts = {"task": [{"value": 1}]}
    stored.status = Thread.Status.INTERRUPTED
    stored.save()
    stored.refresh_from_db()
    assert stored.state_updated_at is None
    assert thread_data(stored) == dict(ThreadSerializer(stored).data)
    stored.state_updated_at = stored.updated_at
    assert thread_data(stored) == dict(ThreadSerializer(stored).data)
    assert thread_data(stored)["created_at"].endswith("Z")


def test_an_owner_sees_their_thread_through_the_owner_column_alone(api, user):
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    ThreadUserObjectPermission.objects.filter(
        content_object_id=thread_id, permission__codename="view_thread"
    ).delete()
    assert api.get(f"/api/threads/{thread_id}").status_code == 200
    assert api.post("/api/threads/count", {}, format="json").json() == 1


def test_an_owner_whose_change_permission_staff_removed_may_no_longer_change(api, user):
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    remove_perm("change_thread", user, Thread.objects.get(pk=thread_id))
    response = api.patch(f"/api/threads/{thread_id}", {"metadata": {"x": 1}}, format="json")
    assert response.status_code == 403
    assert api.delete(f"/api/threads/{thread_id}").status_code == 204


def test_sharing_with_a_user_gives_what_is_granted_and_a_third_user_still_gets_404(
    api, other_api, other_user, make_user
):
    thread_id = api.post("/api/threads", {"metadata": {"a": 1}}, format="json").json()["thread_id"]
    third = client_for(make_user("carol"))
    thread = Thread.objects.get(pk=thread_id)
    assert other_api.get(f"/api/threads/{thread_id}").status_code == 404

    assign_perm("view_thread", other_user, thread)
    assert other_api.get(f"/api/threads/{thread_id}").json()["metadata"] == {"a": 1}
    assert other_api.post("/api/threads/count", {}, format="json").json() == 1
    assert other_api.patch(f"/api/threads/{thread_id}", {}, format="json").status_code == 403

    assign_perm("change_thread", other_user, thread)
    response = other_api.patch(f"/api/threads/{thread_id}", {"metadata": {"b": 2}}, format="json")
    assert response.status_code == 200
    assert other_api.delete(f"/api/threads/{thread_id}").status_code == 403

    assert third.get(f"/api/threads/{thread_id}").status_code == 404
    assert third.patch(f"/api/threads/{thread_id}", {}, format="json").status_code == 404
    assert third.delete(f"/api/threads/{thread_id}").status_code == 404
    assert third.post("/api/threads/search", {}, format="json").json() == []

    assign_perm("delete_thread", other_user, thread)
    assert other_api.delete(f"/api/threads/{thread_id}").status_code == 204
    assert not ThreadUserObjectPermission.objects.filter(content_object_id=thread_id).exists()


def test_sharing_with_a_group_reaches_its_members_only(api, other_api, other_user, make_user):
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    outsider = client_for(make_user("carol"))
    team = Group.objects.create(name="team")
    other_user.groups.add(team)
    assign_perm("view_thread", team, Thread.objects.get(pk=thread_id))

    assert other_api.get(f"/api/threads/{thread_id}").status_code == 200
    assert [
        t["thread_id"] for t in other_api.post("/api/threads/search", {}, format="json").json()
    ] == [thread_id]
    assert other_api.delete(f"/api/threads/{thread_id}").status_code == 403
    assert outsider.get(f"/api/threads/{thread_id}").status_code == 404
    assert outsider.post("/api/threads/count", {}, format="json").json() == 0

    other_user.groups.remove(team)
    assert other_api.get(f"/api/threads/{thread_id}").status_code == 404


def test_changing_the_owner_moves_the_owners_permissions_and_keeps_shares(
    api, other_api, user, other_user, make_user
):
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    carol = make_user("carol")
    assign_perm("view_thread", carol, Thread.objects.get(pk=thread_id))
    assign_perm("view_thread", other_user, Thread.objects.get(pk=thread_id))  # shared before

    change_owner(thread=Thread.objects.get(pk=thread_id), owner=other_user)

    assert api.get(f"/api/threads/{thread_id}").status_code == 404
    assert owner_rows(thread_id) == sorted(
        [(carol.pk, "view_thread"), *((other_user.pk, p) for p in OWNER_PERMISSIONS)]
    )
    assert other_api.delete(f"/api/threads/{thread_id}").status_code == 204


def test_a_taken_id_is_a_conflict_and_adds_no_permission_rows(user, other_user):
    create_thread(user=user, thread_id="taken")
    with pytest.raises(ThreadExists):
        create_thread(user=other_user, thread_id="taken", if_exists="do_nothing")
    with pytest.raises(ThreadExists):
        create_thread(user=user, thread_id="taken")
    again, created = create_thread(user=user, thread_id="taken", if_exists="do_nothing")
    assert not created and again.owner_id == user.pk
    assert owner_rows("taken") == sorted((user.pk, p) for p in OWNER_PERMISSIONS)


@pytest.mark.django_db(transaction=True)
def test_racing_creates_of_one_id_make_one_thread_and_no_orphan_permission_rows(user, other_user):
    barrier = threading.Barrier(RACERS)

    def attempt(n: int) -> object:
        try:
            barrier.wait()
            return create_thread(user=user if n % 2 else other_user, thread_id="contested")
        except Exception as exc:  # the outcome is what the test checks
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(RACERS) as pool:
        outcomes = list(pool.map(attempt, range(RACERS)))

    made = [outcome for outcome in outcomes if isinstance(outcome, tuple)]
    assert len(made) == 1, outcomes
    assert all(isinstance(o, ThreadExists) for o in outcomes if not isinstance(o, tuple)), outcomes
    owner = Thread.objects.get(pk="contested").owner_id
    assert owner == made[0][0].owner_id
    assert owner_rows("contested") == sorted((owner, p) for p in OWNER_PERMISSIONS)
    assert ThreadUserObjectPermission.objects.count() == len(OWNER_PERMISSIONS)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_racing_creates_of_one_id_through_the_server_answer_one_200_and_the_rest_409(
    daphne_server, user
):
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    limits = httpx.Limits(max_connections=RACERS)
    async with httpx.AsyncClient(
        base_url=daphne_server.api_url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=60,
        trust_env=False,
    ) as http:
        responses = await asyncio.gather(
            *(http.post("/threads", json={"thread_id": "raced"}) for _ in range(RACERS))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [409] * (RACERS - 1), statuses
    rows = await call_sync(owner_rows, "raced", on=Executor.THREAD_SENSITIVE)
    assert rows == sorted((user.pk, p) for p in OWNER_PERMISSIONS)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_shared_threads_through_the_sdk_on_a_live_server(
    daphne_server, sdk, other_sdk, other_user, make_user, closing
):
    from langgraph_sdk.errors import NotFoundError

    thread = await sdk.threads.create(metadata={"shared": True})
    carol = await call_sync(make_user, "carol", on=Executor.THREAD_SENSITIVE)
    carol_key = await call_sync(token_for, carol, on=Executor.THREAD_SENSITIVE)
    carol_sdk = sdk_client(closing, daphne_server.api_url, carol_key)
    team = await call_sync(Group.objects.create, name="team", on=Executor.THREAD_SENSITIVE)

    def share() -> None:
        other_user.groups.add(team)
        assign_perm("view_thread", team, Thread.objects.get(pk=thread["thread_id"]))

    with pytest.raises(NotFoundError):
        await other_sdk.threads.get(thread["thread_id"])
    await call_sync(share, on=Executor.THREAD_SENSITIVE)
    seen = await other_sdk.threads.get(thread["thread_id"])
    assert seen["metadata"]["shared"] is True
    assert [t["thread_id"] for t in await other_sdk.threads.search()] == [thread["thread_id"]]
    with pytest.raises(NotFoundError):
        await carol_sdk.threads.get(thread["thread_id"])
    assert await carol_sdk.threads.search() == []


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_flush_under_a_live_server_leaves_thread_creation_and_rights_working(
    daphne_server, make_user
):
    async def create_and_use(username: str) -> str:
        someone = await call_sync(make_user, username, on=Executor.THREAD_SENSITIVE)
        key = await call_sync(token_for, someone, on=Executor.THREAD_SENSITIVE)
        async with httpx.AsyncClient(
            base_url=daphne_server.api_url,
            headers={"Authorization": f"Bearer {key}"},
            trust_env=False,
        ) as http:
            created = await http.post("/threads", json={"metadata": {"n": username}})
            assert created.status_code == 200, created.text
            thread_id = created.json()["thread_id"]
            assert (await http.get(f"/threads/{thread_id}")).status_code == 200
            patched = await http.patch(f"/threads/{thread_id}", json={"metadata": {"x": 1}})
            assert patched.status_code == 200, patched.text
        return thread_id

    await create_and_use("before")
    before = await call_sync(thread_permission_ids, on=Executor.THREAD_SENSITIVE)
    # What each test's teardown does (every table emptied, the permissions made anew), and then
    # the threads app's permissions made once more: their ids change, as on PostgreSQL, whose
    # sequences a flush does not reset (SQLite's flush hands out the same ids again).
    await call_sync(call_command, "flush", interactive=False, on=Executor.THREAD_SENSITIVE)
    await call_sync(remake_thread_permissions, on=Executor.THREAD_SENSITIVE)
    after = await call_sync(thread_permission_ids, on=Executor.THREAD_SENSITIVE)
    assert len(after) == len(before) and not before & after

    thread_id = await create_and_use("after")
    rows = await call_sync(
        lambda: set(
            ThreadUserObjectPermission.objects.filter(content_object_id=thread_id).values_list(
                "permission_id", flat=True
            )
        ),
        on=Executor.THREAD_SENSITIVE,
    )
    assert len(rows) == len(OWNER_PERMISSIONS) and rows <= after


def thread_permission_ids() -> set[int]:
    return set(
        Permission.objects.filter(content_type__app_label="threads").values_list("pk", flat=True)
    )


def remake_thread_permissions() -> None:
    Permission.objects.filter(content_type__app_label="threads").delete()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")


def test_require_visible_thread_follows_owner_shares_and_staff(user, other_user, make_user):
    from threads.exceptions import ThreadNotFound
    from threads.selectors import require_visible_thread

    create_thread(user=user, thread_id="seen")
    assert require_visible_thread(user=user, thread_id="seen") == "seen"
    with pytest.raises(ThreadNotFound):
        require_visible_thread(user=other_user, thread_id="seen")
    with pytest.raises(ThreadNotFound):
        require_visible_thread(user=user, thread_id="no-such-thread")
    team = Group.objects.create(name="team")
    other_user.groups.add(team)
    assign_perm("view_thread", team, Thread.objects.get(pk="seen"))
    assert require_visible_thread(user=other_user, thread_id="seen") == "seen"
    staff = make_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_thread"))
    assert require_visible_thread(user=staff, thread_id="seen") == "seen"


def test_get_thread_loads_the_row_as_the_orm_does(user) -> None:
    from django.utils import timezone

    from threads.selectors import get_thread

    thread, _ = create_thread(user=user, metadata={"project": "demo", "n": [1, 2.5, None]})
    Thread.objects.filter(pk=thread.pk).update(
        values={"messages": [{"content": "é"}]},
        interrupts={"task": [{"id": "i", "value": {"question": "?"}}]},
        error={"error": "ValueError", "message": "bad"},
        state_updated_at=timezone.now(),
        status=Thread.Status.INTERRUPTED,
    )

    read = get_thread(user=user, thread_id=thread.pk, action="change", for_update=True)

    stored = Thread.objects.get(pk=thread.pk)
    for field in Thread._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(stored, field.attname), field.name
    assert not read._state.adding
    assert thread_data(read) == thread_data(stored)
