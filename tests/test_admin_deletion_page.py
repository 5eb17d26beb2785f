"""The admin's deletion confirmation of a run or a thread with a long journal: the page says
what goes, with the count of each kind, but a kind of thousands of rows is one line with its
count (not a line per row), and confirming deletes every row it counted."""

from typing import Any

import pytest

from feedback.models import Feedback
from runs.journal.catalog import EventType
from runs.journal.store import JournalBatch, JournalEntry, ModelUsage, record_batch
from runs.models import Run, RunEvent, RunModelUsage, RunStreamEvent
from tests.engine_support import make_thread, pending_run
from tests.test_admin_services import finished, staff_browser
from threads.models import Thread

pytestmark = pytest.mark.django_db

EVENTS = 10_000
STREAM_EVENTS = 2_000
#: Django's page listed each row: about 150 bytes an event, megabytes for a long journal.
PAGE_AT_MOST = 60_000


def long_journaled(run: Run, user: Any) -> Run:
    """The run with EVENTS journal events, STREAM_EVENTS stored stream events, token usage
    of one model and one user's feedback."""
    entries = [JournalEntry(EventType.AI_RESPONSE, {"type": "ai", "content": "x" * 40})] * EVENTS
    batch = JournalBatch(entries=entries, usage={"scripted": ModelUsage(20, 10, 30, 1)})
    record_batch(thread_id=run.thread_id, run_id=run.pk, batch=batch)
    RunStreamEvent.objects.bulk_create(
        RunStreamEvent(run=run, seq=seq, event="values", data="{}")
        for seq in range(1, STREAM_EVENTS + 1)
    )
    Feedback.objects.create(run=run, thread=run.thread, user=user, rating=1)
    return run


def journaled_runs(user: Any, runs: int = 1) -> list[Run]:
    thread = make_thread(user=user)
    return [
        long_journaled(finished(pending_run(thread=thread, user=user)), user) for _ in range(runs)
    ]


def assert_summarised(confirmation: Any, *, runs: int, threads: int = 0) -> None:
    page = confirmation.content.decode()
    assert confirmation.status_code == 200
    assert len(page) < PAGE_AT_MOST, len(page)
    assert 'name="post"' in page and not confirmation.context["perms_lacking"]
    counts = dict(confirmation.context["model_count"])
    expected = {
        "runs": runs,
        "run events": EVENTS * runs,
        "run stream events": STREAM_EVENTS * runs,
        "run model usages": runs,
        "feedbacks": runs,
    }
    assert {name: counts.get(name) for name in expected} == expected, counts
    if threads:
        assert counts["threads"] == threads
    assert f"Run events: {EVENTS * runs}" in page


def assert_all_gone(runs: list[Run]) -> None:
    ids = [run.pk for run in runs]
    assert not Run.objects.filter(pk__in=ids).exists()
    for model in (RunEvent, RunStreamEvent, RunModelUsage, Feedback):
        assert not model.objects.filter(run_id__in=ids).exists(), model.__name__


def test_a_runs_deletion_page_counts_its_long_journal_and_deletes_it(user: Any) -> None:
    [run] = journaled_runs(user)
    browser = staff_browser()
    url = f"/admin/runs/run/{run.pk}/delete/"

    assert_summarised(browser.get(url), runs=1)
    assert browser.post(url, {"post": "yes"}).status_code == 302

    assert_all_gone([run])
    assert Thread.objects.filter(pk=run.thread_id).exists()


def test_deleting_selected_runs_counts_their_journals_together(user: Any) -> None:
    runs = journaled_runs(user, runs=2)
    browser = staff_browser()
    chosen = {"action": "delete_selected", "_selected_action": [run.pk for run in runs]}

    assert_summarised(browser.post("/admin/runs/run/", chosen), runs=2)
    browser.post("/admin/runs/run/", {**chosen, "post": "yes"})

    assert_all_gone(runs)


@pytest.mark.parametrize("how", ["its page", "delete selected"])
def test_a_threads_deletion_counts_each_event_once_and_deletes_everything(
    user: Any, how: str
) -> None:
    """A journal event goes with its thread and with its run: it is counted once."""
    runs = journaled_runs(user, runs=2)
    thread_id = runs[0].thread_id
    browser = staff_browser()
    if how == "its page":
        url = f"/admin/threads/thread/{thread_id}/delete/"
        confirmation, confirm = browser.get(url), {"post": "yes"}
    else:
        url = "/admin/threads/thread/"
        chosen = {"action": "delete_selected", "_selected_action": [thread_id]}
        confirmation, confirm = browser.post(url, chosen), {**chosen, "post": "yes"}

    assert_summarised(confirmation, runs=2, threads=1)
    browser.post(url, confirm)

    assert not Thread.objects.filter(pk=thread_id).exists()
    assert_all_gone(runs)
    assert not RunEvent.objects.filter(thread_id=thread_id).exists()
