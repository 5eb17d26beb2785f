"""The journal across processes on PostgreSQL + Redis: two web processes and separate workers.

A thread's `seq` is taken by whichever process writes (a worker's flush, a web process's cancel,
the reaper): it must stay unique and increasing across all of them.
"""

import asyncio
import itertools
import signal
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.journal.catalog import EventType
from runs.models import Run, RunEvent
from tests.live import StartWatch, poll_until
from tests.test_multiprocess import (  # noqa: F401 - fixtures
    ON_PRODUCTION_STACK,
    SHORT_LEASE,
    new_thread,
    sdk_a,
    sdk_b,
    wait_for_run,
    web,
)

pytestmark = [
    pytest.mark.skipif(not ON_PRODUCTION_STACK, reason="needs PostgreSQL and Redis"),
    pytest.mark.multiprocess,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]

QUESTION = [{"role": "user", "content": "What is 6 * 7?"}]
TERMINAL = {EventType.RUN_END, EventType.RUN_ERROR, EventType.RUN_CANCEL}
THREADS = 12
ROUNDS = 8


def journals(thread_ids: list[str]) -> dict[str, list[tuple[int, str, str, dict]]]:
    """Each thread's events in the order they were inserted: (seq, run_id, type, metadata)."""
    events = RunEvent.objects.filter(thread_id__in=thread_ids).order_by("id")
    found: dict[str, list[tuple[int, str, str, dict]]] = {t: [] for t in thread_ids}
    for thread_id, seq, run_id, event_type, metadata in events.values_list(
        "thread_id", "seq", "run_id", "event_type", "metadata"
    ):
        found[thread_id].append((seq, str(run_id), event_type, metadata))
    return found


async def all_runs_ended(thread_ids: list[str]) -> None:
    active = Run.objects.active().filter(thread_id__in=thread_ids)

    async def none_active() -> bool:
        return not await active.aexists()

    # Every run of the test on two workers: more CPU than one start-up takes.
    await poll_until(none_active, "every run to end", StartWatch(cpu_budget=600.0))


def assert_well_ordered(journal: list[tuple[int, str, str, dict]]) -> None:
    """Seqs 1..N in insertion order; every run opens once and ends once, in that order."""
    assert [seq for seq, *_ in journal] == list(range(1, len(journal) + 1)), journal
    by_run: dict[str, list[str]] = {}
    for _, run_id, event_type, _ in journal:
        by_run.setdefault(run_id, []).append(event_type)
    for types in by_run.values():
        assert types[-1] in TERMINAL, types
        assert sum(t in TERMINAL for t in types) == 1, types
        assert types[0] == EventType.RUN_START or types == [EventType.RUN_CANCEL], types


async def test_seq_is_unique_and_increasing_per_thread_across_workers_and_web_processes(
    sdk_a: Any,  # noqa: F811 - the fixtures imported above
    sdk_b: Any,  # noqa: F811
    start_worker_process: Any,
) -> None:
    start_worker_process()
    start_worker_process()
    # Concurrent agent runs on many threads, created through both web processes.
    busy = [await new_thread(sdk_a) for _ in range(THREADS)]
    creates = [
        sdk.runs.create(
            thread_id,
            "agent",
            input={"messages": QUESTION},
            multitask_strategy="enqueue",
        )
        for thread_id, sdk in itertools.product(busy, (sdk_a, sdk_b))
    ]
    # Sequential runs on one thread through A, each cancelled through B while the next waits.
    contested = await new_thread(sdk_a)
    previous = None
    for _ in range(ROUNDS):
        run = await sdk_a.runs.create(
            contested,
            "slow",
            input={"steps": 4, "delay": 0.05, "messages": QUESTION},
            multitask_strategy="enqueue",
        )
        if previous is not None:
            await asyncio.gather(
                sdk_b.runs.cancel(contested, previous["run_id"]), return_exceptions=True
            )
        previous = run
    await asyncio.gather(*creates)
    threads = [*busy, contested]

    await all_runs_ended(threads)
    found = await call_sync(journals, threads, on=Executor.THREAD_SENSITIVE)

    for thread_id in threads:
        assert_well_ordered(found[thread_id])
    cancels = [e for e in found[contested] if e[2] == EventType.RUN_CANCEL]
    assert cancels, found[contested]
    assert all(len({run for _, run, *_ in found[t]}) == 2 for t in busy)


async def test_killed_workers_run_keeps_its_journal_and_ends_with_the_recovery_event(
    sdk_a: Any,  # noqa: F811 - the fixtures imported above
    start_worker_process: Any,
) -> None:
    doomed = start_worker_process(**SHORT_LEASE)
    thread_id = await new_thread(sdk_a)
    run = await sdk_a.runs.create(
        thread_id, "slow", input={"steps": 400, "delay": 0.1, "messages": QUESTION}
    )
    written = RunEvent.objects.filter(run_id=run["run_id"], event_type=EventType.HUMAN_INPUT)
    await poll_until(written.aexists, "the run's human input event", log=doomed.log)

    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait()
    survivor = start_worker_process(**SHORT_LEASE)
    await wait_for_run(run["run_id"], lambda r: r.status == "error", "the reaper", survivor)

    journal = (await call_sync(journals, [thread_id], on=Executor.THREAD_SENSITIVE))[thread_id]
    assert [event_type for _, _, event_type, _ in journal] == [
        EventType.RUN_START,
        EventType.HUMAN_INPUT,
        EventType.RUN_ERROR,
    ]
    assert journal[-1][3] == {"status": "error", "recovered": True}
