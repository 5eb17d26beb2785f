"""A run deleted with its thread once it ended (a cancelled run is no longer active) may still
be sending its last stream events: storing them answers False and stores nothing, so its
publisher logs one line of information, not an error with a traceback; a run still there
stores them (again: those stored already are skipped)."""

from typing import Any

import pytest

from runs.engine import bus
from runs.engine.streaming import store_stream_events
from runs.models import Run, RunStreamEvent
from tests.engine_support import make_thread, pending_run
from threads.services import delete_thread

pytestmark = pytest.mark.django_db(transaction=True)


def _events() -> list[bus.StreamEvent]:
    return [bus.StreamEvent.of(n, "custom", {"tick": n}) for n in (1, 2)]


def test_a_runs_events_are_stored_once(user: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, resumable=True)

    assert store_stream_events(run.pk, _events())
    assert store_stream_events(run.pk, _events())  # again: skipped, not an error

    assert RunStreamEvent.objects.filter(run_id=run.pk).count() == 2


def test_the_late_events_of_a_deleted_run_are_dropped_without_an_error(user: Any) -> None:
    thread = make_thread(user=user)
    run = pending_run(thread=thread, user=user, resumable=True)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.INTERRUPTED)
    delete_thread(thread=thread)

    stored = store_stream_events(run.pk, _events())  # was an IntegrityError

    assert stored is False
    assert not RunStreamEvent.objects.filter(run_id=run.pk).exists()
