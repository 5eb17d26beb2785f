"""The admin writes through the API's services, with the API's rules: deleting a thread takes
its checkpoints and is refused while it is busy, an active run is not deleted, adding a thread
grants its owner's permissions and changing the owner moves them; sharing offers per-object
permissions only."""

import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from deerflow_site.bridge import Executor, call_sync
from feedback.models import Feedback
from runs.engine.registry import graph_for_thread
from runs.journal.catalog import EventType
from runs.journal.store import JournalBatch, JournalEntry, record_batch
from runs.models import Run, RunEvent
from tests.engine_support import make_thread, pending_run
from tests.fixtures import client_for
from threads.models import Thread


def staff_browser() -> Client:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345!")
    browser = Client()
    browser.force_login(admin)
    return browser


def messages_of(response: Any) -> str:
    return " ".join(str(message) for message in response.context["messages"])


def finished(run: Run) -> Run:
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCESS)
    Thread.objects.filter(pk=run.thread_id).update(status=Thread.Status.IDLE)
    return run


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closing_checkpointer")
async def test_a_thread_deleted_in_the_admin_comes_back_empty_when_its_id_is_created_again(
    user: Any,
) -> None:
    thread_id = f"admin-{uuid.uuid4()}"
    await call_sync(make_thread, user=user, thread_id=thread_id, on=Executor.THREAD_SENSITIVE)
    graph = await graph_for_thread("echo")
    config = {"configurable": {"thread_id": thread_id, "run_id": str(uuid.uuid4())}}
    await graph.ainvoke({"messages": [{"role": "user", "content": "a secret"}]}, config)

    def delete_in_admin_then_recreate() -> Any:
        browser = staff_browser()
        response = browser.post(f"/admin/threads/thread/{thread_id}/delete/", {"post": "yes"})
        assert response.status_code == 302
        api = client_for(user)
        assert api.post("/api/threads", {"thread_id": thread_id}, format="json").status_code == 200
        return api.get(f"/api/threads/{thread_id}/state").json()

    state = await call_sync(delete_in_admin_then_recreate, on=Executor.THREAD_SENSITIVE)

    assert state["values"] in ({}, None, [])
    assert (await graph.aget_state({"configurable": {"thread_id": thread_id}})).values == {}


@pytest.mark.django_db
def test_deleting_a_busy_thread_in_the_admin_is_refused_on_its_page_and_in_bulk(
    user: Any,
) -> None:
    thread = make_thread(user=user)
    pending_run(thread=thread, user=user)
    browser = staff_browser()

    page = browser.post(f"/admin/threads/thread/{thread.pk}/delete/", {"post": "yes"}, follow=True)
    bulk = browser.post(
        "/admin/threads/thread/",
        {"action": "delete_selected", "_selected_action": [thread.pk], "post": "yes"},
        follow=True,
    )

    assert "Not deleted" in messages_of(page)
    assert "Not deleted" in messages_of(bulk)
    assert Thread.objects.filter(pk=thread.pk).exists()
    assert Run.objects.filter(thread=thread).exists()


@pytest.mark.django_db
def test_bulk_delete_deletes_idle_threads_and_reports_the_busy_ones(user: Any) -> None:
    idle, busy = make_thread(user=user), make_thread(user=user)
    pending_run(thread=busy, user=user)

    response = staff_browser().post(
        "/admin/threads/thread/",
        {"action": "delete_selected", "_selected_action": [idle.pk, busy.pk], "post": "yes"},
        follow=True,
    )

    assert "Deleted 1 threads" in messages_of(response)
    assert busy.pk in messages_of(response)
    assert set(Thread.objects.values_list("pk", flat=True)) == {busy.pk}


@pytest.mark.django_db
def test_deleting_an_active_run_in_the_admin_is_refused_and_a_finished_one_goes(
    user: Any,
) -> None:
    active = pending_run(thread=make_thread(user=user), user=user)
    done = finished(pending_run(thread=make_thread(user=user), user=user))

    response = staff_browser().post(
        "/admin/runs/run/",
        {"action": "delete_selected", "_selected_action": [active.pk, done.pk], "post": "yes"},
        follow=True,
    )

    assert "Not deleted" in messages_of(response)
    assert set(Run.objects.values_list("pk", flat=True)) == {active.pk}
    assert Thread.objects.get(pk=active.thread_id).status == Thread.Status.BUSY


def journaled(run: Run, user: Any) -> Run:
    """The run with what every run that ran has: journal events, and a user's feedback."""
    record_batch(
        thread_id=run.thread_id,
        run_id=run.pk,
        batch=JournalBatch(entries=[JournalEntry(EventType.RUN_START)]),
    )
    Feedback.objects.create(run=run, thread=run.thread, user=user, rating=1)
    return run


@pytest.mark.django_db
def test_a_finished_run_with_its_journal_is_deleted_from_the_confirmation_page(
    user: Any,
) -> None:
    run = journaled(finished(pending_run(thread=make_thread(user=user), user=user)), user)
    browser = staff_browser()
    chosen = {"action": "delete_selected", "_selected_action": [run.pk]}

    confirmation = browser.post("/admin/runs/run/", chosen)
    assert confirmation.status_code == 200
    assert not confirmation.context["perms_lacking"], confirmation.context["perms_lacking"]
    assert 'name="post"' in confirmation.content.decode()  # the "Yes, I'm sure" form
    browser.post("/admin/runs/run/", {**chosen, "post": "yes"})

    assert not Run.objects.filter(pk=run.pk).exists()
    assert not RunEvent.objects.filter(run_id=run.pk).exists()
    assert not Feedback.objects.filter(run_id=run.pk).exists()


@pytest.mark.django_db
def test_an_idle_thread_with_journaled_runs_is_deleted_from_its_page(user: Any) -> None:
    thread = make_thread(user=user)
    journaled(finished(pending_run(thread=thread, user=user)), user)
    browser = staff_browser()
    url = f"/admin/threads/thread/{thread.pk}/delete/"

    confirmation = browser.get(url)
    assert not confirmation.context["perms_lacking"], confirmation.context["perms_lacking"]
    assert 'name="post"' in confirmation.content.decode()
    assert browser.post(url, {"post": "yes"}).status_code == 302

    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert not RunEvent.objects.filter(thread_id=thread.pk).exists()


@pytest.mark.django_db
def test_a_thread_added_in_the_admin_is_its_owners_through_the_api(user: Any) -> None:
    response = staff_browser().post(
        "/admin/threads/thread/add/",
        {"thread_id": "added-by-staff", "owner": user.pk, "metadata": '{"team": "ops"}'},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    got = client_for(user).get("/api/threads/added-by-staff")
    assert got.status_code == 200
    assert got.json()["metadata"]["team"] == "ops"


@pytest.mark.django_db
def test_changing_a_threads_owner_in_the_admin_moves_the_owners_permissions(
    user: Any, other_user: Any
) -> None:
    thread = make_thread(user=user)

    response = staff_browser().post(
        f"/admin/threads/thread/{thread.pk}/change/",
        {"owner": other_user.pk, "metadata": "{}", "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert client_for(other_user).get(f"/api/threads/{thread.pk}").status_code == 200
    assert client_for(user).get(f"/api/threads/{thread.pk}").status_code == 404


@pytest.mark.django_db
def test_sharing_a_thread_offers_only_per_object_permissions_and_grants_them(
    user: Any, other_user: Any
) -> None:
    thread = make_thread(user=user)
    browser = staff_browser()
    manage = f"/admin/threads/thread/{thread.pk}/permissions/user-manage/{other_user.pk}/"

    overview = browser.get(f"/admin/threads/thread/{thread.pk}/permissions/").content.decode()
    form = browser.get(manage).content.decode()
    shared = browser.post(manage, {"permissions": ["view_thread"]})

    for page in (overview, form):
        assert "api_read_threads" not in page and "API scope" not in page
    assert 'value="view_thread"' in form
    assert shared.status_code == 302
    assert client_for(other_user).get(f"/api/threads/{thread.pk}").status_code == 200


@pytest.mark.django_db
def test_adding_a_thread_with_an_id_the_api_cannot_address_is_a_form_error(user: Any) -> None:
    response = staff_browser().post(
        "/admin/threads/thread/add/", {"thread_id": "no spaces/here", "owner": user.pk}
    )

    assert response.status_code == 200
    assert "Must be a UUID" in response.content.decode()
    assert not Thread.objects.exists()


def staff_with(*codenames: str) -> Client:
    """A browser of a staff user (no superuser) holding only these global permissions."""
    staff = get_user_model().objects.create_user("clerk", "clerk@example.com", "pw-12345!")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    browser = Client()
    browser.force_login(staff)
    return browser


@pytest.mark.django_db
def test_staff_without_the_delete_permission_cannot_delete_a_run_or_thread(user: Any) -> None:
    """Deleting needs no permission for the related kinds any more (the service deletes them),
    but the object's own delete permission still counts: its page, its POST and the bulk
    action are refused and nothing goes."""
    thread = make_thread(user=user)
    run = journaled(finished(pending_run(thread=thread, user=user)), user)
    browser = staff_with("view_run", "view_thread", "change_thread", "view_runevent")

    for kind, pk in (("runs/run", run.pk), ("threads/thread", thread.pk)):
        url = f"/admin/{kind}/{pk}/delete/"
        assert browser.get(url).status_code == 403, kind
        assert browser.post(url, {"post": "yes"}).status_code == 403, kind
        chosen = {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}
        browser.post(f"/admin/{kind}/", chosen)

    assert Run.objects.filter(pk=run.pk).exists()
    assert Thread.objects.filter(pk=thread.pk).exists()
    assert RunEvent.objects.filter(run_id=run.pk).exists()
    assert Feedback.objects.filter(run_id=run.pk).exists()


@pytest.mark.django_db
def test_staff_with_the_runs_delete_permission_deletes_it_with_its_journal(user: Any) -> None:
    run = journaled(finished(pending_run(thread=make_thread(user=user), user=user)), user)
    browser = staff_with("view_run", "delete_run")
    url = f"/admin/runs/run/{run.pk}/delete/"

    confirmation = browser.get(url)
    assert not confirmation.context["perms_lacking"], confirmation.context["perms_lacking"]
    assert browser.post(url, {"post": "yes"}).status_code == 302

    assert not Run.objects.filter(pk=run.pk).exists()
    assert not RunEvent.objects.filter(run_id=run.pk).exists()
    assert not Feedback.objects.filter(run_id=run.pk).exists()
    assert Thread.objects.filter(pk=run.thread_id).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closing_checkpointer")
async def test_a_user_deleted_in_the_admin_goes_with_their_threads_journal_and_checkpoints(
    user: Any, other_user: Any
) -> None:
    # Django's own deletion was refused ("Cannot delete user": the journal is read-only) for
    # any user who had run anything; the database's cascade alone would also have left the
    # threads' checkpoints behind.
    thread_id = f"admin-user-{uuid.uuid4()}"
    graph = await graph_for_thread("echo")

    def their_thread_and_a_run_on_another_users() -> tuple[Run, Run]:
        own = finished(pending_run(thread=make_thread(user=user, thread_id=thread_id), user=user))
        entries = [JournalEntry(EventType.RUN_START)]
        record_batch(thread_id=thread_id, run_id=own.pk, batch=JournalBatch(entries=entries))
        elsewhere = finished(pending_run(thread=make_thread(user=other_user), user=user))
        return own, elsewhere

    own, elsewhere = await call_sync(
        their_thread_and_a_run_on_another_users, on=Executor.THREAD_SENSITIVE
    )
    config = {"configurable": {"thread_id": thread_id, "run_id": str(uuid.uuid4())}}
    await graph.ainvoke({"messages": [{"role": "user", "content": "a secret"}]}, config)

    def delete_in_admin() -> tuple[int, bool, bool, bool, Any]:
        response = staff_browser().post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
        return (
            response.status_code,
            get_user_model().objects.filter(pk=user.pk).exists(),
            Thread.objects.filter(pk=thread_id).exists(),
            RunEvent.objects.filter(run_id=own.pk).exists(),
            Run.objects.get(pk=elsewhere.pk).user_id,
        )

    status, user_left, thread_left, journal_left, elsewhere_user = await call_sync(
        delete_in_admin, on=Executor.THREAD_SENSITIVE
    )

    assert status == 302
    assert not user_left and not thread_left and not journal_left
    assert elsewhere_user is None  # a run on a thread another user owns stays, without a user
    assert (await graph.aget_state({"configurable": {"thread_id": thread_id}})).values == {}


@pytest.mark.django_db
def test_a_user_whose_thread_is_busy_is_not_deleted_and_the_admin_says_which(user: Any) -> None:
    idle, busy = make_thread(user=user), make_thread(user=user)
    pending_run(thread=busy, user=user)

    page = staff_browser().post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}, follow=True)

    assert "Not deleted" in messages_of(page) and busy.pk in messages_of(page)
    assert get_user_model().objects.filter(pk=user.pk).exists()
    assert set(Thread.objects.filter(owner=user).values_list("pk", flat=True)) == {
        idle.pk,
        busy.pk,
    }
