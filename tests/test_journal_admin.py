"""The journal and feedback in the admin: filtered lists without unbounded counts, and a run's
page with its events, token usage and feedback."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from deerflow_site import admin_lists
from feedback.models import Feedback
from runs.journal.catalog import EventType
from runs.journal.store import JournalBatch, JournalEntry, ModelUsage, record_batch
from tests.engine_support import make_thread, pending_run

pytestmark = pytest.mark.django_db

PROJECT_APPS = ("deerflow_site", "threads", "runs", "feedback")


@pytest.fixture
def staff_client(client: Any) -> Any:
    staff = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-12345!")
    client.force_login(staff)
    return client


@pytest.fixture
def journaled_run(user: Any) -> Any:
    """A run with a short journal, 30 tokens of `scripted` and a thumbs down from `user`."""
    run = pending_run(thread=make_thread(user=user, thread_id="journaled"), user=user)
    batch = JournalBatch(
        entries=[
            JournalEntry(EventType.RUN_START),
            JournalEntry(EventType.HUMAN_INPUT, {"type": "human", "content": "hello there"}),
            JournalEntry(EventType.AI_RESPONSE, {"type": "ai", "content": "general kenobi"}),
            JournalEntry(EventType.RUN_END, metadata={"status": "success"}),
        ],
        usage={"scripted": ModelUsage(20, 10, 30, 1)},
    )
    record_batch(thread_id=run.thread_id, run_id=run.pk, batch=batch)
    Feedback.objects.create(run=run, thread=run.thread, user=user, rating=-1, comment="meh")
    return run


@pytest.mark.parametrize("url", ["/admin/runs/runevent/", "/admin/feedback/feedback/"])
def test_lists_count_no_further_than_the_cap(
    staff_client: Any, journaled_run: Any, monkeypatch: Any, url: str
) -> None:
    monkeypatch.setattr(admin_lists, "COUNT_CAP", 1)

    page = staff_client.get(url)

    assert page.status_code == 200
    assert page.context["cl"].result_count == 1  # capped: there are more events
    assert page.context["cl"].full_result_count is None  # the unfiltered count is never taken


def test_event_list_filters_by_thread_run_and_type_and_never_counts_everything(
    staff_client: Any, journaled_run: Any
) -> None:
    other = pending_run(thread=make_thread(user=journaled_run.user, thread_id="other"), user=None)
    record_batch(
        thread_id="other",
        run_id=other.pk,
        batch=JournalBatch(entries=[JournalEntry(EventType.RUN_START)]),
    )
    url = "/admin/runs/runevent/"

    everything = staff_client.get(url)
    by_run = staff_client.get(url, {"run_id": str(journaled_run.pk)})
    by_thread = staff_client.get(url, {"thread_id": "other"})
    by_type = staff_client.get(url, {"event_type__exact": "llm.ai.response"})
    bad_run = staff_client.get(url, {"run_id": "not-a-uuid"})

    assert everything.status_code == 200
    assert everything.context["cl"].result_count == 5
    assert by_run.context["cl"].result_count == 4
    assert [e.seq for e in by_run.context["cl"].result_list] == [1, 2, 3, 4]
    assert by_thread.context["cl"].result_count == 1
    assert [e.event_type for e in by_type.context["cl"].result_list] == ["llm.ai.response"]
    assert bad_run.status_code == 200 and bad_run.context["cl"].result_count == 0


def test_feedback_list_filters_by_rating_user_and_run(
    staff_client: Any, journaled_run: Any
) -> None:
    url = "/admin/feedback/feedback/"

    everything = staff_client.get(url)
    down = staff_client.get(url, {"rating__exact": "-1"})
    up = staff_client.get(url, {"rating__exact": "1"})
    by_user = staff_client.get(url, {"username": journaled_run.user.username})
    by_nobody = staff_client.get(url, {"username": "nobody"})
    by_run = staff_client.get(url, {"run_id": str(journaled_run.pk)})

    assert everything.status_code == 200 and everything.context["cl"].result_count == 1
    assert down.context["cl"].result_count == 1 and up.context["cl"].result_count == 0
    assert by_user.context["cl"].result_count == 1
    assert by_nobody.context["cl"].result_count == 0
    assert by_run.context["cl"].result_count == 1


def test_run_page_shows_its_events_in_order_token_usage_and_feedback(
    staff_client: Any, journaled_run: Any
) -> None:
    page = staff_client.get(f"/admin/runs/run/{journaled_run.pk}/change/")

    html = page.content.decode()
    assert page.status_code == 200
    assert html.index("hello there") < html.index("general kenobi")
    assert f"/admin/runs/runevent/?run_id={journaled_run.pk}" in html
    assert "token usage by model" in html.lower() and "scripted" in html
    assert "meh" in html


def test_token_usage_rows_on_a_runs_page_say_model_tokens_and_calls(
    staff_client: Any, journaled_run: Any
) -> None:
    page = staff_client.get(f"/admin/runs/run/{journaled_run.pk}/change/")

    [usage] = page.context["inline_admin_formsets"][0]
    assert str(usage.original) == "scripted: 30 tokens (20 in, 10 out), 1 call"
    assert "scripted: 30 tokens (20 in, 10 out), 1 call" in page.content.decode()


def test_every_model_of_ours_has_a_text_of_its_own() -> None:
    """No admin page (a row's title, a deletion's list) shows Django's "X object (1)"."""
    from django.apps import apps
    from django.db import models

    ours = [m for m in apps.get_models() if m.__module__.split(".")[0] in PROJECT_APPS]
    assert ours
    assert [m.__name__ for m in ours if m.__str__ is models.Model.__str__] == []
