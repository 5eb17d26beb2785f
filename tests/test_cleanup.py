"""`manage.py cleanup`: retention of threads, runs, stream events and checkpoints."""

import asyncio
import io
import itertools
import sys
import threading
import uuid
from asyncio.subprocess import PIPE, STDOUT
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from deerflow_site.bridge import Executor, call_sync
from feedback.models import Feedback
from runs.engine.registry import graph_for_thread
from runs.journal.catalog import EventCategory, EventType
from runs.models import Run, RunEvent, RunStreamEvent
from runs.retention import Retention, clear_expired
from tests.engine_support import make_thread, pending_run
from tests.live import REPO_ROOT
from threads.models import Thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("closing_checkpointer"),
]

JOURNAL_SEQ = itertools.count(1)
RETENTION = Retention(run_days=30, stream_seconds=3600, batch_size=2)


@dataclass
class World:
    """Old and new data side by side; what cleanup must delete and what it must keep."""

    expired_thread: str
    busy_expired_thread: str
    live_thread: str
    orphan_thread: str
    old_run: Any
    recent_run: Any
    active_old_run: Any
    run_with_old_events: Any
    run_with_recent_events: Any


def finished_run(
    *, thread: Thread, user: Any, ended_days_ago: float, events: int = 0, journal: bool = False
) -> Run:
    """A finished run with `events` stored stream events; with `journal`, two journal events
    (start and end) and the user's feedback."""
    run = pending_run(thread=thread, user=user)
    ended_at = timezone.now() - timedelta(days=ended_days_ago)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCESS, ended_at=ended_at)
    Thread.objects.filter(pk=thread.pk).update(status=Thread.Status.IDLE)
    for seq in range(1, events + 1):
        RunStreamEvent.objects.create(run=run, seq=seq, event="values", data="{}")
    RunStreamEvent.objects.filter(run=run).update(created_at=ended_at)
    if journal:
        for event_type in (EventType.RUN_START, EventType.RUN_END):
            RunEvent.objects.create(
                thread=thread,
                run=run,
                seq=next(JOURNAL_SEQ),
                event_type=event_type,
                category=EventCategory.LIFECYCLE,
                created_at=ended_at,
            )
        Feedback.objects.create(run=run, thread=thread, user=user, rating=Feedback.Rating.POSITIVE)
    return run


def build_world(user: Any) -> World:
    long_ago = timezone.now() - timedelta(days=1)
    expired = make_thread(user=user)
    finished_run(thread=expired, user=user, ended_days_ago=40, events=3, journal=True)
    busy_expired = make_thread(user=user)
    pending_run(thread=busy_expired, user=user)
    Thread.objects.filter(pk__in=[expired.pk, busy_expired.pk]).update(expires_at=long_ago)

    live = make_thread(user=user)
    old_run = finished_run(thread=live, user=user, ended_days_ago=40, events=2, journal=True)
    recent_run = finished_run(thread=live, user=user, ended_days_ago=1, journal=True)
    old_events = finished_run(thread=live, user=user, ended_days_ago=2 / 24, events=4)
    recent_events = finished_run(thread=live, user=user, ended_days_ago=0.1 / 24, events=5)
    active_old = pending_run(thread=make_thread(user=user), user=user)
    Run.objects.filter(pk=active_old.pk).update(
        created_at=timezone.now() - timedelta(days=60), ended_at=timezone.now() - timedelta(days=60)
    )
    return World(
        expired_thread=expired.pk,
        busy_expired_thread=busy_expired.pk,
        live_thread=live.pk,
        orphan_thread=f"orphan-{uuid.uuid4()}",
        old_run=old_run.pk,
        recent_run=recent_run.pk,
        active_old_run=active_old.pk,
        run_with_old_events=old_events.pk,
        run_with_recent_events=recent_events.pk,
    )


async def write_checkpoints(*thread_ids: str) -> None:
    """Two checkpoints per thread (input and the echo node's), through LangGraph's saver."""
    graph = await graph_for_thread("echo")
    for thread_id in thread_ids:
        config = {"configurable": {"thread_id": thread_id, "run_id": str(uuid.uuid4())}}
        await graph.ainvoke({"messages": [{"role": "user", "content": "hi"}]}, config)


def checkpoints_of(thread_id: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = %s", [thread_id])
        return cursor.fetchone()[0]


async def world_with_checkpoints(user: Any) -> World:
    # Checkpoint tables are not Django's: what other tests left there goes first.
    await write_checkpoints("warm-up")
    await call_sync(clear_expired, retention=RETENTION, on=Executor.THREAD_SENSITIVE)
    world = await call_sync(build_world, user, on=Executor.THREAD_SENSITIVE)
    await write_checkpoints(world.expired_thread, world.live_thread, world.orphan_thread)
    return world


def snapshot() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT thread_id, checkpoint_id FROM checkpoints")
        checkpoints = set(cursor.fetchall())
    return {
        "threads": set(Thread.objects.values_list("pk", flat=True)),
        "runs": set(Run.objects.values_list("pk", flat=True)),
        "events": set(RunStreamEvent.objects.values_list("pk", flat=True)),
        "journal": set(RunEvent.objects.values_list("pk", flat=True)),
        "feedback": set(Feedback.objects.values_list("pk", flat=True)),
        "checkpoints": checkpoints,
    }


EXPECTED = {
    "threads": 1,
    "runs": 2,
    "journal events": 2 + 2,
    "feedback": 1 + 1,
    "stream events": 3 + 2 + 4,
    "checkpoints": 0,
}


def expected_counts(world: World) -> dict[str, int]:
    per_thread = checkpoints_of(world.expired_thread)
    return {**EXPECTED, "checkpoints": per_thread + checkpoints_of(world.orphan_thread)}


async def test_cleanup_deletes_exactly_what_is_past_its_retention(user: Any) -> None:
    world = await world_with_checkpoints(user)
    expected = await call_sync(expected_counts, world, on=Executor.THREAD_SENSITIVE)
    live_checkpoints = await call_sync(
        checkpoints_of, world.live_thread, on=Executor.THREAD_SENSITIVE
    )

    counts = await call_sync(clear_expired, retention=RETENTION, on=Executor.THREAD_SENSITIVE)

    assert counts == expected

    def assert_what_is_left() -> None:
        threads = set(Thread.objects.values_list("pk", flat=True))
        assert world.expired_thread not in threads
        assert {world.busy_expired_thread, world.live_thread} <= threads
        runs = set(Run.objects.values_list("pk", flat=True))
        assert world.old_run not in runs
        assert {world.recent_run, world.active_old_run, world.run_with_old_events} <= runs
        events = set(RunStreamEvent.objects.values_list("run_id", flat=True))
        assert events == {world.run_with_recent_events}
        assert set(RunEvent.objects.values_list("run_id", flat=True)) == {world.recent_run}
        assert set(Feedback.objects.values_list("run_id", flat=True)) == {world.recent_run}
        assert checkpoints_of(world.expired_thread) == 0
        assert checkpoints_of(world.orphan_thread) == 0
        assert checkpoints_of(world.live_thread) == live_checkpoints > 0
        assert Thread.objects.get(pk=world.busy_expired_thread).status == Thread.Status.BUSY

    await call_sync(assert_what_is_left, on=Executor.THREAD_SENSITIVE)


async def test_dry_run_reports_the_same_counts_and_changes_nothing(user: Any) -> None:
    world = await world_with_checkpoints(user)
    expected = await call_sync(expected_counts, world, on=Executor.THREAD_SENSITIVE)
    before = await call_sync(snapshot, on=Executor.THREAD_SENSITIVE)

    counts = await call_sync(
        clear_expired, retention=RETENTION, dry_run=True, on=Executor.THREAD_SENSITIVE
    )

    assert counts == expected
    assert await call_sync(snapshot, on=Executor.THREAD_SENSITIVE) == before


async def test_zero_run_days_keeps_finished_runs(user: Any) -> None:
    world = await world_with_checkpoints(user)
    keep_runs = Retention(run_days=0, stream_seconds=3600, batch_size=100)

    counts = await call_sync(clear_expired, retention=keep_runs, on=Executor.THREAD_SENSITIVE)

    assert counts["runs"] == 1  # only the expired thread's own run
    assert counts["feedback"] == 1
    assert await Run.objects.filter(pk=world.old_run).aexists()


def test_a_thread_past_its_ttl_is_left_while_its_state_is_being_updated(user: Any) -> None:
    # The update writes its checkpoint after cleanup's delete: it would outlive its thread,
    # and a thread created again with the id would start from it.
    now = timezone.now()
    updating, free = make_thread(user=user), make_thread(user=user)
    Thread.objects.filter(pk__in=[updating.pk, free.pk]).update(expires_at=now - timedelta(days=1))
    Thread.objects.filter(pk=updating.pk).update(state_updating_until=now + timedelta(minutes=5))

    counts = clear_expired(retention=RETENTION)

    assert counts["threads"] == 1
    assert set(Thread.objects.values_list("pk", flat=True)) == {updating.pk}


def test_command_prints_counts_per_kind_and_its_flags_override_the_settings(user: Any) -> None:
    thread = make_thread(user=user)
    old = finished_run(thread=thread, user=user, ended_days_ago=3)
    out = io.StringIO()

    call_command("cleanup", "--dry-run", "--run-days", "2", stdout=out)

    assert "would delete 1 runs" in out.getvalue()
    assert Run.objects.filter(pk=old.pk).exists()

    out = io.StringIO()
    call_command("cleanup", "--run-days", "2", "--batch-size", "1", stdout=out)

    lines = out.getvalue().splitlines()
    assert "deleted 1 runs" in lines and "deleted 0 threads" in lines
    assert not Run.objects.filter(pk=old.pk).exists()


#: Flag values no date or LIMIT can hold (they were tracebacks from the first query).
REFUSED_FLAGS = [
    ("--batch-size", "0"),
    ("--batch-size", "99999999999999999999"),
    ("--run-days", "-1"),
    ("--run-days", "nan"),
    ("--run-days", "inf"),
    ("--run-days", "1e10"),
    ("--stream-seconds", "nan"),
    ("--stream-seconds", "1e300"),
    ("--stream-seconds", "ten"),
]


@pytest.mark.parametrize(
    ("flag", "value"), REFUSED_FLAGS, ids=[f"{f}={v}" for f, v in REFUSED_FLAGS]
)
def test_command_refuses_a_flag_value_it_cannot_use_naming_the_flag(
    user: Any, flag: str, value: str
) -> None:
    old = finished_run(thread=make_thread(user=user), user=user, ended_days_ago=3)

    # The refusal quotes what was typed ('-1', not argparse's float -1.0).
    with pytest.raises(CommandError, match=f"^{flag} must be a .*number.*, got '{value}'$"):
        call_command("cleanup", flag, value, stdout=io.StringIO())

    assert Run.objects.filter(pk=old.pk).exists()


def test_command_refuses_a_blank_flag_value(user: Any) -> None:
    old = finished_run(thread=make_thread(user=user), user=user, ended_days_ago=3)

    with pytest.raises(CommandError, match=r"^--batch-size needs a number, got ' '$"):
        call_command("cleanup", "--run-days", "0", "--batch-size", " ", stdout=io.StringIO())

    assert Run.objects.filter(pk=old.pk).exists()


def test_command_takes_the_largest_values_it_allows(user: Any) -> None:
    old = finished_run(thread=make_thread(user=user), user=user, ended_days_ago=3)
    out = io.StringIO()
    largest = ["--run-days", "36500", "--stream-seconds", "1e9", "--batch-size", "2147483647"]

    call_command("cleanup", *largest, stdout=out)

    assert "deleted 0 runs" in out.getvalue().splitlines()
    assert Run.objects.filter(pk=old.pk).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
async def test_two_concurrent_cleanups_neither_fail_nor_count_twice(user: Any) -> None:
    world = await world_with_checkpoints(user)
    # More rows than one batch, for both to take turns.
    await call_sync(many_old_runs, user, count=40, on=Executor.THREAD_SENSITIVE)
    expected = await call_sync(expected_counts, world, on=Executor.THREAD_SENSITIVE)
    expected = {**expected, "runs": expected["runs"] + 40}
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def one_cleanup() -> None:
        try:
            start.wait()
            results.append(clear_expired(retention=RETENTION))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    cleanups = [threading.Thread(target=one_cleanup) for _ in range(2)]
    for cleanup in cleanups:
        cleanup.start()
    for cleanup in cleanups:
        await call_sync(cleanup.join, on=Executor.THREAD_SENSITIVE)

    assert errors == []
    totals = {kind: sum(result[kind] for result in results) for kind in expected}
    assert totals == expected


def many_old_runs(user: Any, *, count: int) -> None:
    thread = make_thread(user=user)
    for _ in range(count):
        finished_run(thread=thread, user=user, ended_days_ago=31)


def deleted_counts(output: str) -> dict[str, int]:
    """`deleted N kind` lines of the command's output, by kind."""
    counts = {}
    for line in output.splitlines():
        verb, _, rest = line.partition(" ")
        if verb == "deleted":
            number, _, kind = rest.partition(" ")
            counts[kind] = int(number)
    return counts


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
async def test_two_cleanup_processes_at_once_end_cleanly_with_correct_totals(
    user: Any, process_env: dict[str, str]
) -> None:
    world = await world_with_checkpoints(user)
    await call_sync(many_old_runs, user, count=60, on=Executor.THREAD_SENSITIVE)
    expected = await call_sync(expected_counts, world, on=Executor.THREAD_SENSITIVE)
    expected = {**expected, "runs": expected["runs"] + 60}
    command = [sys.executable, "manage.py", "cleanup", "--run-days", "30", "--batch-size", "2"]

    processes = [
        await asyncio.create_subprocess_exec(
            *command, cwd=REPO_ROOT, env=process_env, stdout=PIPE, stderr=STDOUT
        )
        for _ in range(2)
    ]
    outputs = [(await process.communicate())[0].decode() for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    results = [deleted_counts(output) for output in outputs]
    assert {kind: sum(result[kind] for result in results) for kind in expected} == expected
