"""What operators see: the staff status endpoint, the admin index, workers' heartbeats."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.utils import timezone

from runs.engine.worker import RunWorker
from runs.models import Run, WorkerHeartbeat
from tests.engine_support import make_thread, pending_run
from tests.fixtures import client_for

STATUS_URL = "/api/ops/status"


def staff(make_user: Any, name: str = "operator", *, may_view_runs: bool = True) -> Any:
    user = make_user(name, is_staff=True)
    if may_view_runs:
        user.user_permissions.add(Permission.objects.get(codename="view_run"))
    return user


def queue_with_every_kind(user: Any) -> None:
    now = timezone.now()
    for status in (Run.Status.SUCCESS, Run.Status.SUCCESS, Run.Status.ERROR, Run.Status.RUNNING):
        run = pending_run(thread=make_thread(user=user), user=user)
        Run.objects.filter(pk=run.pk).update(status=status)
    waiting = pending_run(thread=make_thread(user=user), user=user)
    Run.objects.filter(pk=waiting.pk).update(run_at=now - timedelta(seconds=90))
    pending_run(thread=make_thread(user=user), user=user, run_at=now + timedelta(hours=1))
    WorkerHeartbeat.objects.create(
        worker_id="host:1:alive", started_at=now, seen_at=now, concurrency=4, running=1
    )
    WorkerHeartbeat.objects.create(
        worker_id="host:2:gone",
        started_at=now - timedelta(hours=1),
        seen_at=now - timedelta(minutes=5),
        concurrency=4,
        running=0,
    )


@pytest.mark.django_db
@override_settings(RUN_LEASE_SECONDS=30)
def test_status_counts_runs_by_status_the_queue_and_the_workers_seen_within_a_lease(
    make_user: Any, user: Any
) -> None:
    queue_with_every_kind(user)

    response = client_for(staff(make_user)).get(STATUS_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["runs"] == {
        "pending": 2,
        "running": 1,
        "success": 2,
        "error": 1,
        "timeout": 0,
        "interrupted": 0,
    }
    assert body["queue_depth"] == 1
    assert body["scheduled"] == 1
    assert 90 <= body["oldest_pending_seconds"] < 3600
    assert [w["worker_id"] for w in body["workers"]] == ["host:1:alive"]
    assert body["workers"][0]["running"] == 1


@pytest.mark.django_db
def test_status_is_for_staff_who_may_view_runs_only(make_user: Any, api: Any) -> None:
    refused = api.get(STATUS_URL)  # not staff
    assert refused.status_code == 403
    # The answer says what is needed and where else to look, not only "no permission".
    assert "runs.view_run" in refused.json()["detail"]
    assert "/admin/" in refused.json()["detail"]
    narrow = staff(make_user, "narrow", may_view_runs=False)
    assert client_for(narrow).get(STATUS_URL).status_code == 403
    assert Client().get(STATUS_URL).status_code == 401


@pytest.mark.django_db
def test_admin_index_shows_the_status_to_staff_who_may_view_runs(make_user: Any, user: Any) -> None:
    queue_with_every_kind(user)
    browser = Client()
    browser.force_login(staff(make_user))

    page = browser.get("/admin/").content.decode()

    assert 'id="operations-status"' in page
    assert 'id="queue-depth">1<' in page
    assert "host:1:alive" in page and "host:2:gone" not in page

    narrow = Client()
    narrow.force_login(staff(make_user, "narrow", may_view_runs=False))
    assert 'id="operations-status"' not in narrow.get("/admin/").content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer")
async def test_a_worker_beats_while_it_runs_and_forgets_itself_when_it_stops() -> None:
    worker = RunWorker(concurrency=3, worker_id="host:99:beating")
    task = asyncio.create_task(worker.run())
    await worker.started.wait()

    beat = await WorkerHeartbeat.objects.aget(pk="host:99:beating")
    assert beat.concurrency == 3 and beat.running == 0

    worker.request_stop()
    await asyncio.wait_for(task, 30)
    assert not await WorkerHeartbeat.objects.filter(pk="host:99:beating").aexists()


@pytest.mark.django_db
def test_ok_answers_200_when_the_database_and_the_channel_layer_answer() -> None:
    response = Client().get("/api/ok")

    assert response.status_code == 200
    assert response.json() == {"ok": True}
