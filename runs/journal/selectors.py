"""Reads of the journal: the chat history pages, a run's events, a thread's token usage.

Every read follows the thread's permissions: a thread the caller may not view is a 404.
Windows follow the deer-flow gateway's rule: `after_seq` gives the first `limit` events after
it; `before_seq` (or neither) the last `limit` before it. Both come back in ascending seq.
"""

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from deerflow_site.api.ids import validate_thread_id
from feedback.models import Feedback
from runs.journal.catalog import EventCategory, EventType
from runs.journal.rendering import StoredEvent, stored_event, uuid_text
from runs.models import Run, RunEvent, RunModelUsage
from runs.selectors import get_run
from threads.selectors import require_visible_thread

#: A window of events, as stored (see runs.journal.rendering): the ORM would decode content
#: and metadata only for the page to encode them again. `{scope}` narrows to a thread's or a
#: run's events (index seeks on (thread, category, seq) and (run, event_type, seq)).
WINDOW_SQL = """
    SELECT e.seq, e.thread_id, e.run_id, e.event_type, e.category,
           CAST(e.content AS TEXT), CAST(e.metadata AS TEXT), e.created_at
    FROM {events} e WHERE {scope}{bounds}
    ORDER BY e.seq {order} LIMIT %s
"""
#: The newest AI message of each run: one backward seek in (run, event_type, seq) per run.
LAST_AI_SEQS_SQL = """
    SELECT (SELECT e.seq FROM {events} e WHERE e.run_id = r.run_id AND e.event_type = %s
            ORDER BY e.seq DESC LIMIT 1)
    FROM {run_table} r WHERE r.run_id IN ({runs})
"""
#: The caller's feedback on those runs (one per user and run).
FEEDBACK_SQL = """
    SELECT run_id, feedback_id, rating, comment FROM {feedback}
    WHERE user_id = %s AND run_id IN ({runs})
"""
THREAD_CATEGORY_SCOPE = "e.thread_id = %s AND e.category = %s"
RUN_CATEGORY_SCOPE = "e.run_id = %s AND e.category = %s"
RUN_SCOPE = "e.run_id = %s"


@dataclass(frozen=True)
class Window:
    """Which events of a page: `limit` ≥ 1, and optional seq bounds (exclusive)."""

    limit: int
    before_seq: int | None = None
    after_seq: int | None = None


def event_window(scope: str, params: list[Any], window: Window) -> tuple[list[StoredEvent], bool]:
    """The window's events within `scope` (SQL over `e`, with its `params`), ascending; and
    whether more lie beyond it (one extra row is fetched to know)."""
    bounds, bound_params = "", []
    if window.before_seq is not None:
        bounds, bound_params = " AND e.seq < %s", [window.before_seq]
    if window.after_seq is not None:
        bounds += " AND e.seq > %s"
        bound_params.append(window.after_seq)
    ascending = window.after_seq is not None
    sql = WINDOW_SQL.format(
        events=RunEvent._meta.db_table,
        scope=scope,
        bounds=bounds,
        order="ASC" if ascending else "DESC",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *bound_params, window.limit + 1])
        rows = [stored_event(row) for row in cursor.fetchall()]
    has_more = len(rows) > window.limit
    rows = rows[: window.limit]
    if not ascending:
        rows.reverse()
    return rows, has_more


def thread_messages(*, user: Any, thread_id: str, window: Window) -> list[StoredEvent]:
    """The displayable messages of every run of the thread; the last AI message of each run
    carries `feedback`: the caller's `{feedback_id, rating, comment}`, or None."""
    thread_id = require_visible_thread(user=user, thread_id=validate_thread_id(thread_id))
    rows, _ = event_window(THREAD_CATEGORY_SCOPE, [thread_id, EventCategory.MESSAGE.value], window)
    return _with_feedback(rows, user=user)


def _with_feedback(rows: list[StoredEvent], *, user: Any) -> list[StoredEvent]:
    run_ids = {row.run_id for row in rows if row.event_type == EventType.AI_RESPONSE}
    if not run_ids:
        return rows
    run_keys = [Run._meta.pk.get_db_prep_value(run_id, connection) for run_id in run_ids]
    marks = ", ".join("%s" for _ in run_keys)
    with connection.cursor() as cursor:
        cursor.execute(
            LAST_AI_SEQS_SQL.format(
                events=RunEvent._meta.db_table, run_table=Run._meta.db_table, runs=marks
            ),
            [EventType.AI_RESPONSE.value, *run_keys],
        )
        last_ai_seqs = {seq for (seq,) in cursor.fetchall()}
        last_runs = [row.run_id for row in rows if row.seq in last_ai_seqs]
        if not last_runs:
            return rows
        keys = [Run._meta.pk.get_db_prep_value(run_id, connection) for run_id in last_runs]
        cursor.execute(
            FEEDBACK_SQL.format(
                feedback=Feedback._meta.db_table, runs=", ".join("%s" for _ in keys)
            ),
            [user.pk, *keys],
        )
        given = {
            uuid_text(run_id): {
                "feedback_id": uuid_text(feedback_id),
                "rating": rating,
                "comment": comment,
            }
            for run_id, feedback_id, rating, comment in cursor.fetchall()
        }
    return [
        row._replace(feedback=given.get(row.run_id)) if row.seq in last_ai_seqs else row
        for row in rows
    ]


def run_messages(
    *, user: Any, thread_id: str, run_id: str, window: Window
) -> tuple[list[StoredEvent], bool]:
    """The displayable messages of one run, and whether more lie beyond the window."""
    run = get_run(user=user, thread_id=thread_id, run_id=run_id)
    return event_window(RUN_CATEGORY_SCOPE, [_run_key(run), EventCategory.MESSAGE.value], window)


def run_events(
    *, user: Any, thread_id: str, run_id: str, event_types: list[str], window: Window
) -> list[StoredEvent]:
    """The run's journal, of the given catalog types only when some are given."""
    run = get_run(user=user, thread_id=thread_id, run_id=run_id)
    scope, params = RUN_SCOPE, [_run_key(run)]
    if event_types:
        scope += " AND e.event_type IN ({})".format(", ".join("%s" for _ in event_types))
        params += list(event_types)
    rows, _ = event_window(scope, params, window)
    return rows


def _run_key(run: Run) -> Any:
    """The run's id as the database compares it (SQLite: 32 hex digits)."""
    return Run._meta.pk.get_db_prep_value(run.pk, connection)


def thread_token_usage(*, user: Any, thread_id: str, include_active: bool) -> dict[str, Any]:
    """Token totals of the thread's ended runs (and running ones with `include_active`),
    summed by the database, in total and by model (`runs`: how many runs used the model)."""
    thread_id = require_visible_thread(user=user, thread_id=validate_thread_id(thread_id))
    counted = [s for s in Run.Status.values if s != Run.Status.PENDING]
    if not include_active:
        counted.remove(Run.Status.RUNNING)
    runs = Run.objects.filter(thread_id=thread_id, status__in=counted)
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
        "thread_id": thread_id,
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
