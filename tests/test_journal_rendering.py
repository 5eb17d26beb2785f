"""The journal pages splice stored JSON into their answer: the same JSON as the ORM read rendered
by DRF's JSON renderer gave, for every kind of content, each window, and the feedback."""

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from feedback.models import Feedback
from runs.journal import selectors
from runs.journal.rendering import events_json
from runs.journal.store import JournalEntry, record_events
from runs.models import Run, RunEvent
from threads.services import create_thread

pytestmark = pytest.mark.django_db

FIELDS = ("seq", "thread_id", "run_id", "event_type", "category", "content", "metadata")
CONTENTS: list[Any] = [
    {"type": "human", "content": 'héllo ☃ \u2028 "quoted" \\ back', "additional_kwargs": {}},
    {"type": "ai", "content": "", "tool_calls": [{"name": "calculator", "args": {"x": 1.5e-7}}]},
    {"type": "tool", "content": "42", "nested": {"deep": [[{"k": None}], True, False, 0]}},
    None,
    "a bare string",
    [1, 2, 3],
    {"big": 2**62, "negative": -1, "float": 0.1, "empty": {}, "list": []},
]


def old_rendering(rows: list[dict[str, Any]]) -> Any:
    """What the page answered before: ORM values rendered by DRF's JSON renderer."""
    return json.loads(JSONRenderer().render(rows))


def ordered(queryset: Any, fields: tuple[str, ...] = (*FIELDS, "created_at")) -> list[dict]:
    return list(queryset.order_by("seq").values(*fields))


@pytest.fixture
def journal(user: Any) -> tuple[Any, Run]:
    thread, _ = create_thread(user=user)
    run = Run.objects.create(
        thread=thread,
        user=user,
        assistant_id=uuid.uuid4(),
        graph_id="agent",
        run_at=timezone.now(),
    )
    kinds = ["llm.human.input", "llm.ai.response", "llm.tool.result", "llm.call", "run.end"]
    entries = [
        JournalEntry(
            event_type=kinds[n % len(kinds)],
            content=content,
            metadata={"n": n, "usage": {"input_tokens": n}, "ünï": "✓"},
            created_at=timezone.now() - timedelta(seconds=100 - n),
        )
        for n, content in enumerate(CONTENTS * 3)
    ]
    record_events(thread_id=thread.thread_id, run_id=run.run_id, entries=entries)
    return thread, run


@pytest.mark.parametrize(
    "window",
    [
        selectors.Window(limit=50),
        selectors.Window(limit=3),
        selectors.Window(limit=4, before_seq=10),
        selectors.Window(limit=4, after_seq=5),
        selectors.Window(limit=200, after_seq=0, before_seq=12),
    ],
)
def test_run_events_page_is_the_json_it_was(journal, user, window) -> None:
    thread, run = journal
    events = selectors.run_events(
        user=user, thread_id=thread.thread_id, run_id=str(run.run_id), event_types=[], window=window
    )
    got = json.loads(events_json(events))

    everything = ordered(RunEvent.objects.filter(run=run))
    if window.before_seq is not None:
        everything = [e for e in everything if e["seq"] < window.before_seq]
    if window.after_seq is not None:
        expected = [e for e in everything if e["seq"] > window.after_seq][: window.limit]
    else:
        expected = everything[-window.limit :]
    assert got == old_rendering(expected)
    assert [list(event) for event in got] == [[*FIELDS, "created_at"]] * len(got)


def test_thread_messages_carry_feedback_on_each_runs_last_ai_message(journal, user) -> None:
    thread, run = journal
    feedback = Feedback.objects.create(run=run, thread=thread, user=user, rating=1, comment="ok")

    events = selectors.thread_messages(
        user=user, thread_id=thread.thread_id, window=selectors.Window(limit=200)
    )
    got = json.loads(events_json(events))

    expected = ordered(RunEvent.objects.filter(thread=thread, category="message"))
    last_ai = max(e["seq"] for e in expected if e["event_type"] == "llm.ai.response")
    for event in expected:
        if event["seq"] == last_ai:
            event["feedback"] = {
                "feedback_id": feedback.feedback_id,
                "rating": 1,
                "comment": "ok",
            }
    assert got == old_rendering(expected)
    assert [e["feedback"]["feedback_id"] for e in got if "feedback" in e] == [
        str(feedback.feedback_id)
    ]


def test_a_run_without_feedback_shows_null_on_its_last_ai_message(journal, user) -> None:
    thread, _ = journal
    events = selectors.thread_messages(
        user=user, thread_id=thread.thread_id, window=selectors.Window(limit=200)
    )
    with_key = [e for e in json.loads(events_json(events)) if "feedback" in e]
    assert len(with_key) == 1 and with_key[0]["feedback"] is None
    assert with_key[0]["event_type"] == "llm.ai.response"
