"""Reads of the journal: the chat history pages, a run's events, a thread's token usage.

Every read follows the thread's permissions: a thread the caller may not view is a 404.
Windows follow the deer-flow gateway's rule: `after_seq` gives the first `limit` events after
it; `before_seq` (or neither) the last `limit` before it. Both come back in ascending seq.
"""

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from deerflow_site.api.ids import validate_thread_id
from feedback.models import Feedback
from runs.journal.catalog import EventCategory, EventType
from runs.models import Run, RunEvent, RunModelUsage
from runs.selectors import get_run
from threads.selectors import get_thread

#: The fields of an event as the API shows it.
EVENT_FIELDS = (
    "seq",
    "thread_id",
    "run_id",
    "event_type",
    "category",
    "content",
    "metadata",
    "created_at",
)


@dataclass(frozen=True)
class Window:
    """Which events of a page: `limit` ≥ 1, and optional seq bounds (exclusive)."""

    limit: int
    before_seq: int | None = None
    after_seq: int | None = None


def event_window(events: QuerySet[RunEvent], window: Window) -> tuple[list[dict[str, Any]], bool]:
    """The window's events, ascending, as dicts; and whether more lie beyond it (one extra row
    is fetched to know)."""
    if window.before_seq is not None:
        events = events.filter(seq__lt=window.before_seq)
    if window.after_seq is not None:
        rows = list(
            events.filter(seq__gt=window.after_seq)
            .order_by("seq")
            .values(*EVENT_FIELDS)[: window.limit + 1]
        )
        return rows[: window.limit], len(rows) > window.limit
    rows = list(events.order_by("-seq").values(*EVENT_FIELDS)[: window.limit + 1])
    has_more = len(rows) > window.limit
    rows = rows[: window.limit]
    rows.reverse()
    return rows, has_more


def thread_messages(*, user: Any, thread_id: str, window: Window) -> list[dict[str, Any]]:
    """The displayable messages of every run of the thread; the last AI message of each run
    carries `feedback`: the caller's `{feedback_id, rating, comment}`, or None."""
    thread = get_thread(user=user, thread_id=validate_thread_id(thread_id))
    messages = RunEvent.objects.filter(thread=thread, category=EventCategory.MESSAGE)
    rows, _ = event_window(messages, window)
    _attach_feedback(rows, user=user)
    return rows


def _attach_feedback(rows: list[dict[str, Any]], *, user: Any) -> None:
    run_ids = {row["run_id"] for row in rows if row["event_type"] == EventType.AI_RESPONSE}
    if not run_ids:
        return
    # One index seek per run (its newest AI message), not a scan of the run's messages.
    newest = RunEvent.objects.filter(
        run_id=OuterRef("pk"), event_type=EventType.AI_RESPONSE
    ).order_by("-seq")
    last_ai_seqs = set(
        Run.objects.filter(pk__in=run_ids)
        .annotate(last=Subquery(newest.values("seq")[:1]))
        .order_by()
        .values_list("last", flat=True)
    )
    last_rows = [row for row in rows if row["seq"] in last_ai_seqs]
    if not last_rows:
        return
    given = {
        run_id: {"feedback_id": feedback_id, "rating": rating, "comment": comment}
        for run_id, feedback_id, rating, comment in Feedback.objects.filter(
            user=user, run_id__in={row["run_id"] for row in last_rows}
        ).values_list("run_id", "feedback_id", "rating", "comment")
    }
    for row in last_rows:
        row["feedback"] = given.get(row["run_id"])


def run_messages(
    *, user: Any, thread_id: str, run_id: str, window: Window
) -> tuple[list[dict[str, Any]], bool]:
    """The displayable messages of one run, and whether more lie beyond the window."""
    run = get_run(user=user, thread_id=thread_id, run_id=run_id)
    return event_window(RunEvent.objects.filter(run=run, category=EventCategory.MESSAGE), window)


def run_events(
    *, user: Any, thread_id: str, run_id: str, event_types: list[str], window: Window
) -> list[dict[str, Any]]:
    """The run's journal, of the given catalog types only when some are given."""
    run = get_run(user=user, thread_id=thread_id, run_id=run_id)
    events = RunEvent.objects.filter(run=run)
    if event_types:
        events = events.filter(event_type__in=event_types)
    rows, _ = event_window(events, window)
    return rows


def thread_token_usage(*, user: Any, thread_id: str, include_active: bool) -> dict[str, Any]:
    """Token totals of the thread's ended runs (and running ones with `include_active`),
    summed by the database, in total and by model (`runs`: how many runs used the model)."""
    thread = get_thread(user=user, thread_id=validate_thread_id(thread_id))
    counted = [s for s in Run.Status.values if s != Run.Status.PENDING]
    if not include_active:
        counted.remove(Run.Status.RUNNING)
    runs = Run.objects.filter(thread=thread, status__in=counted)
    totals = runs.aggregate(
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        total_tokens=Coalesce(Sum("total_tokens"), 0),
        runs=Count("pk"),
    )
    by_model = (
        RunModelUsage.objects.filter(run__in=runs.values("pk"))
        .values("model_name")
        .annotate(
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            total=Sum("total_tokens"),
            runs=Count("run_id", distinct=True),
        )
        .order_by("model_name")
    )
    return {
        "thread_id": thread.thread_id,
        "total_input_tokens": totals["input_tokens"],
        "total_output_tokens": totals["output_tokens"],
        "total_tokens": totals["total_tokens"],
        "total_runs": totals["runs"],
        "by_model": {
            row["model_name"]: {
                "input_tokens": row["input"],
                "output_tokens": row["output"],
                "total_tokens": row["total"],
                "runs": row["runs"],
            }
            for row in by_model
        },
    }
