"""tests.live.StartWatch: a starting process is given up on for what it did (CPU), not for the
wall time a loaded machine makes it take."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from scripts.cluster import die_with_parent
from tests.live import StartWatch, wait_until, watched

BLOCKED = "import time; time.sleep(600)"
BUSY = "while True: pass"
BUSY_CHILD = (
    "import subprocess, sys, time; "
    f"subprocess.Popen([sys.executable, '-c', {BUSY!r}]); time.sleep(600)"
)


@pytest.fixture
def spawn() -> Iterator:
    processes: list[subprocess.Popen[bytes]] = []

    def start(code: str) -> subprocess.Popen[bytes]:
        # Its own process group, killed whole afterwards: BUSY_CHILD's child outlives its parent
        # otherwise, spinning on a core for the rest of the suite.
        process = subprocess.Popen(
            [sys.executable, "-c", code], preexec_fn=die_with_parent, start_new_session=True
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):  # a test killed it whole already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def verdict_within(watch: StartWatch, seconds: float) -> str | None:
    """The watch's first reason to give up within `seconds`, else None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (reason := watch.gave_up()) is not None:
            return reason
        time.sleep(0.05)
    return None


def test_a_blocked_process_is_given_up_on_once_it_stops_using_cpu(spawn) -> None:
    watch = StartWatch(spawn(BLOCKED).pid, stall_seconds=2.0)
    reason = verdict_within(watch, 120.0)
    assert reason is not None and "no CPU" in reason


def test_a_busy_process_is_given_up_on_past_its_cpu_budget(spawn) -> None:
    watch = StartWatch(spawn(BUSY).pid, cpu_budget=0.5)
    reason = verdict_within(watch, 120.0)
    assert reason is not None and "of CPU" in reason and "no CPU" not in reason


def test_a_working_process_is_waited_for_however_slow(spawn) -> None:
    # Busy in a child while the parent sleeps: the tree's CPU is what counts (scripts/cluster).
    watch = StartWatch(spawn(BUSY_CHILD).pid, cpu_budget=600.0, stall_seconds=3.0)
    assert verdict_within(watch, 10.0) is None


def test_the_ceiling_holds_whatever_the_process_does(spawn) -> None:
    watch = StartWatch(spawn(BUSY).pid, cpu_budget=600.0, ceiling_seconds=1.0)
    reason = verdict_within(watch, 120.0)
    assert reason is not None and reason.startswith("not up")


BURSTS = (
    "import time\n"
    "while True:\n"
    "    start = time.monotonic()\n"
    "    while time.monotonic() - start < 0.05: pass\n"
    "    time.sleep(0.3)"
)


def test_a_watch_of_every_child_goes_on_counting_past_one_that_ended(spawn) -> None:
    # A worker killed after much work, a survivor that works little: the watch of every child
    # (no pids) sees the survivor's progress, not a fall below what the killed one had used.
    watch = StartWatch(stall_seconds=2.0, cpu_budget=600.0)
    busy = spawn(BUSY)
    while watch.gave_up() is None and psutil.Process(busy.pid).cpu_times().user < 1.0:
        time.sleep(0.05)
    os.killpg(busy.pid, signal.SIGKILL)
    busy.wait()
    spawn(BURSTS)
    assert verdict_within(watch, 6.0) is None


async def test_a_watched_wait_is_cancelled_and_fails_once_its_processes_stall(spawn) -> None:
    blocked = spawn(BLOCKED)
    never = asyncio.ensure_future(asyncio.Event().wait())

    with pytest.raises(AssertionError, match="waited in vain for nothing: used no CPU for 1s"):
        await watched(never, "nothing", StartWatch(blocked.pid, stall_seconds=1.0))
    assert never.cancelled()
    with pytest.raises(AssertionError, match="the log"):
        wait_until(
            lambda: False,
            "nothing",
            StartWatch(blocked.pid, stall_seconds=1.0),
            log=lambda: "the log",
        )
