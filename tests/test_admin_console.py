"""The admin as staff's run console: the list (columns, filters, search, bounded queries), a run's
read-only page, the cancel and re-run actions and the permissions each needs."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deerflow_site.admin_lists import COUNT_CAP
from deerflow_site.bridge import Executor, call_sync
from feedback.models import Feedback
from runs.engine.worker import RunWorker
from runs.journal.catalog import EventCategory, EventType
from runs.models import Run, RunEvent
from tests.engine_support import make_thread, pending_run, wait_for_status
from threads.models import Thread

RUNS = "/admin/runs/run/"


def browser_for(make_user: Any, name: str, *codenames: str, superuser: bool = False) -> Client:
    staff = make_user(name, is_staff=True, is_superuser=superuser)
    staff.groups.clear()  # only the permissions named here (not the API users' scopes)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    browser = Client()
    browser.force_login(staff)
    return browser


@pytest.fixture
def root(make_user: Any) -> Client:
    return browser_for(make_user, "root", superuser=True)


def ended(run: Run, status: str = Run.Status.SUCCESS, **fields: Any) -> Run:
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=status, started_at=now - timedelta(seconds=3), ended_at=now, **fields
    )
    Thread.objects.filter(pk=run.thread_id).update(status=Thread.Status.IDLE)
    run.refresh_from_db()
    return run


def listed(browser: Client, **params: Any) -> set[str]:
    response = browser.get(RUNS, params)
    assert response.status_code == 200
    return {str(run.pk) for run in response.context["cl"].result_list}


@pytest.mark.django_db
def test_run_list_shows_status_graph_thread_owner_created_duration_and_tokens(
    root: Client, user: Any
) -> None:
    run = ended(pending_run(thread=make_thread(user=user), user=user), total_tokens=1234)

    page = root.get(RUNS).content.decode()

    for shown in (str(run.pk), "success", "echo", run.thread_id, user.username, "3.0 s", "1234"):
        assert shown in page


@pytest.mark.django_db
def test_run_list_filters_by_status_graph_owner_thread_and_date(
    root: Client, user: Any, other_user: Any
) -> None:
    echo = ended(pending_run(thread=make_thread(user=user), user=user))
    slow = pending_run(thread=make_thread(user=other_user), user=other_user, graph_id="slow")
    old = ended(pending_run(thread=make_thread(user=user), user=user))
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=60))

    assert listed(root, status__exact="pending") == {str(slow.pk)}
    assert listed(root, graph_id="slow") == {str(slow.pk)}
    assert listed(root, username=other_user.username) == {str(slow.pk)}
    assert listed(root, thread_id=echo.thread_id) == {str(echo.pk)}
    since = {"created_at__gte": str(timezone.now() - timedelta(days=7))}  # "Past 7 days"
    assert listed(root, **since) == {str(echo.pk), str(slow.pk)}


@pytest.mark.django_db
def test_run_list_searches_by_run_id_thread_id_and_owner(
    root: Client, user: Any, other_user: Any
) -> None:
    mine = pending_run(thread=make_thread(user=user), user=user)
    theirs = pending_run(thread=make_thread(user=other_user), user=other_user)

    assert listed(root, q=str(mine.pk)) == {str(mine.pk)}
    assert listed(root, q=theirs.thread_id) == {str(theirs.pk)}
    assert listed(root, q=other_user.username) == {str(theirs.pk)}
    assert listed(root, q="no-such-thing") == set()


@pytest.mark.django_db
def test_run_list_queries_do_not_grow_with_the_rows(
    root: Client, user: Any, make_user: Any
) -> None:
    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert root.get(RUNS).status_code == 200
        return len(queries)

    for _ in range(3):
        pending_run(thread=make_thread(user=user), user=user)
    few = queries_for_list()
    for index in range(30):
        owner = make_user(f"owner-{index}")
        pending_run(thread=make_thread(user=owner), user=owner)
    many = queries_for_list()

    assert many == few
    assert many <= 12


@pytest.mark.django_db
def test_a_runs_page_is_read_only_with_its_request_redacted_outcome_journal_and_feedback(
    root: Client, user: Any
) -> None:
    thread = make_thread(user=user)
    run = pending_run(
        thread=thread,
        user=user,
        config={"configurable": {"api_key": "sk-very-secret", "model": "m1"}},
    )
    run = ended(
        run,
        Run.Status.ERROR,
        error={"error": "ValueError", "message": "the tool broke"},
        worker_id="host:7:abc",
        attempt=1,
        webhook_status="failed",
        webhook_detail="HTTP 500",
    )
    RunEvent.objects.create(
        thread=thread,
        run=run,
        seq=1,
        event_type=EventType.RUN_START,
        category=EventCategory.LIFECYCLE,
        content={"marker": "journal-start"},
        created_at=timezone.now(),
    )
    Feedback.objects.create(run=run, thread=thread, user=user, rating=-1, comment="wrong answer")

    page = root.get(f"{RUNS}{run.pk}/change/").content.decode()

    assert "sk-very-secret" not in page and "***" in page and "m1" in page
    for shown in ("the tool broke", "host:7:abc", "journal-start", "wrong answer", "HTTP 500"):
        assert shown in page, shown
    assert 'name="_save"' not in page and "deletelink" not in page


@pytest.mark.django_db
def test_cancel_needs_the_cancel_permission(make_user: Any, user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)
    viewer = browser_for(make_user, "viewer", "view_run")
    canceller = browser_for(make_user, "canceller", "view_run", "cancel_run")
    cancel = {"action": "cancel_interrupt", "_selected_action": [str(run.pk)]}

    assert "cancel_interrupt" not in viewer.get(RUNS).content.decode()
    viewer.post(RUNS, cancel)
    run.refresh_from_db()
    assert run.status == Run.Status.PENDING

    canceller.post(RUNS, cancel)
    run.refresh_from_db()
    assert run.status == Run.Status.INTERRUPTED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer")
async def test_the_list_after_cancelling_a_running_run_shows_it_interrupted(user: Any) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    run = await call_sync(
        pending_run,
        thread=thread,
        user=user,
        graph_id="slow",
        input={"steps": 500, "delay": 0.05},
        on=Executor.THREAD_SENSITIVE,
    )
    worker = RunWorker(concurrency=1)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for_status(run.pk, Run.Status.RUNNING)  # the worker has claimed it

        def cancel_in_admin() -> Any:
            browser = Client()
            admin = Permission.objects.filter(codename__in=["view_run", "cancel_run"])
            staff = user.__class__.objects.create_user("desk", is_staff=True)
            staff.user_permissions.add(*admin)
            browser.force_login(staff)
            cancel = {"action": "cancel_interrupt", "_selected_action": [str(run.pk)]}
            return browser.post(RUNS, cancel, follow=True)

        response = await call_sync(cancel_in_admin, on=Executor.THREAD_SENSITIVE)
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)

    rows = {str(row.pk): row.status for row in response.context["cl"].result_list}
    assert rows[str(run.pk)] == Run.Status.INTERRUPTED


@pytest.mark.django_db
def test_rerun_queues_a_new_run_of_the_same_request_and_needs_the_create_permission(
    make_user: Any, user: Any
) -> None:
    done = ended(pending_run(thread=make_thread(user=user), user=user, input={"x": 1}))
    rerun = {"action": "rerun", "_selected_action": [str(done.pk)]}

    browser_for(make_user, "viewer", "view_run").post(RUNS, rerun)
    assert Run.objects.filter(thread_id=done.thread_id).count() == 1

    browser_for(make_user, "operator", "view_run", "add_run").post(RUNS, rerun)
    again = Run.objects.filter(thread_id=done.thread_id).exclude(pk=done.pk).get()
    assert again.status == Run.Status.PENDING
    assert again.kwargs["input"] == {"x": 1}
    assert again.graph_id == done.graph_id and again.user_id == user.pk


@pytest.mark.django_db
def test_staff_without_run_permissions_see_nothing_of_runs(make_user: Any, user: Any) -> None:
    thread = make_thread(user=user)
    run = pending_run(thread=thread, user=user)
    browser = browser_for(make_user, "threads-only", "view_thread")

    assert browser.get(RUNS).status_code == 403
    assert browser.get(f"{RUNS}{run.pk}/change/").status_code == 403
    thread_page = browser.get(f"/admin/threads/thread/{thread.pk}/change/").content.decode()
    assert str(run.pk) not in thread_page
    assert "/admin/runs/run/" not in browser.get("/admin/").content.decode()


@pytest.mark.django_db
def test_a_threads_page_lists_its_newest_runs_bounded(root: Client, user: Any) -> None:
    thread = make_thread(user=user)
    runs = [ended(pending_run(thread=thread, user=user)) for _ in range(22)]

    page = root.get(f"/admin/threads/thread/{thread.pk}/change/").content.decode()

    shown = [run for run in runs if str(run.pk) in page]
    assert len(shown) == 20
    assert "All runs of this thread" in page


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the planner's estimate is PostgreSQL's"
)
@pytest.mark.django_db
def test_unfiltered_run_list_on_postgresql_is_counted_by_the_planners_estimate(
    root: Client, user: Any
) -> None:
    thread = make_thread(user=user)
    now = timezone.now()
    many = COUNT_CAP + 2000
    Run.objects.bulk_create(
        Run(thread=thread, user=user, assistant_id=uuid.uuid4(), graph_id="echo", run_at=now)
        for _ in range(many)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE runs_run")

    with CaptureQueriesContext(connection) as queries:
        response = root.get(RUNS)

    assert response.context["cl"].result_count > COUNT_CAP
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "runs_run" in q["sql"]]
    assert counts == []
    filtered = root.get(RUNS, {"graph_id": "echo"})
    assert filtered.context["cl"].result_count == COUNT_CAP  # a filter is counted, capped
