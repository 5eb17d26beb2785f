"""The Django admin of runs: lists, detail with stream events, cancel actions."""

from typing import Any

import pytest
from django.test import Client

from runs.models import Run, RunStreamEvent
from tests.engine_support import make_thread, pending_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_layer")]


@pytest.fixture
def staff(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("admin", is_staff=True, is_superuser=True))
    return client


def test_run_list_filters_by_status(staff: Client, user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)

    response = staff.get("/admin/runs/run/", {"status__exact": "pending"})

    assert response.status_code == 200
    assert str(run.pk) in response.content.decode()


def test_run_page_shows_its_stream_events(staff: Client, user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, resumable=True)
    RunStreamEvent.objects.create(run=run, seq=1, event="values", data='{"marker": 1}')

    response = staff.get(f"/admin/runs/run/{run.pk}/change/")

    assert response.status_code == 200
    assert "marker" in response.content.decode()


def test_cancel_action_interrupts_a_pending_run(staff: Client, user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)

    response = staff.post(
        "/admin/runs/run/", {"action": "cancel_interrupt", "_selected_action": [str(run.pk)]}
    )

    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == Run.Status.INTERRUPTED


@pytest.fixture
def viewer(make_user: Any) -> Client:
    """Staff who may view runs in the admin, and nothing more."""
    from django.contrib.auth.models import Permission

    user = make_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client = Client()
    client.force_login(user)
    return client


def test_staff_with_view_rights_only_cannot_cancel_runs(viewer: Client, user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user)

    listing = viewer.get("/admin/runs/run/")
    response = viewer.post(
        "/admin/runs/run/", {"action": "cancel_interrupt", "_selected_action": [str(run.pk)]}
    )

    assert listing.status_code == 200
    assert "cancel_interrupt" not in listing.content.decode()
    assert response.status_code in (200, 302)
    run.refresh_from_db()
    assert run.status == Run.Status.PENDING


def test_the_cancel_permission_lets_staff_cancel(viewer: Client, user: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    staff_user = get_user_model().objects.get(username="viewer")
    staff_user.user_permissions.add(Permission.objects.get(codename="cancel_run"))
    run = pending_run(thread=make_thread(user=user), user=user)

    viewer.post(
        "/admin/runs/run/", {"action": "cancel_interrupt", "_selected_action": [str(run.pk)]}
    )

    run.refresh_from_db()
    assert run.status == Run.Status.INTERRUPTED
