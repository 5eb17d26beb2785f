"""CPU of a create+wait run's database work, single-threaded, without the server around it.

    .venv/bin/python bench/run_statements.py [--runs 2000] [--repeat 3] [--profile FUNC]

What the server does in the database for each run of the bench's echo graph, on a SQLite file
with the server's settings (WAL, synchronous=NORMAL, IMMEDIATE transactions): admission's
transaction (`runs.admission._insert`, the run started directly on a stand-in worker), then the
run's end (`runs.engine.finish.finish_run`, with its two journal events and its thread's
snapshot). Each phase's CPU per run (µs) is its process time over `--runs` runs, the best of
`--repeat`; and the Python function calls per run, which do not move with the machine's load.
`--profile admission|finish` prints cProfile's top functions of that phase instead.
"""

import argparse
import cProfile
import pstats
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import inprocess

REPO = Path(__file__).resolve().parent.parent


class StandInWorker:
    """What a direct start asks of the embedded worker: a slot, always free."""

    worker_id = "bench-worker"

    def reserve_slot(self) -> bool:
        return True

    def release_slot(self) -> None:
        pass

    def start_reserved(self, run: Any) -> None:
        pass

    def wake_if_free(self) -> None:
        pass


class Bench:
    def __init__(self) -> None:
        from django.contrib.auth import get_user_model

        from runs.admission import RunRequest
        from runs.engine import direct
        from threads.services import create_thread

        direct.serve_direct_starts(StandInWorker())  # type: ignore[arg-type]
        self.user = get_user_model().objects.create_user("bench", password="x")
        self.thread_id = create_thread(user=self.user)[0].thread_id
        self.request = RunRequest(
            assistant_id="bench",
            metadata={},
            multitask_strategy="reject",
            if_not_exists="reject",
            on_disconnect="cancel",
            on_completion="keep",
            after_seconds=0,
            resumable=False,
            checkpoint_id=None,
            checkpoint=None,
            kwargs={"input": {"text": "x"}, "stream_mode": ["values"]},
        )

    def admit(self) -> Any:
        from runs.admission import _insert

        run = _insert(user=self.user, thread_id=self.thread_id, request=self.request, run_id=None)
        assert run.status == "running", run.status
        return run

    def finish(self, run: Any) -> None:
        from runs.engine.finish import RunOutcome, ThreadSnapshot, finish_run
        from runs.journal.lifecycle import run_ended, run_started
        from runs.journal.store import JournalBatch

        journal = JournalBatch(
            entries=[
                run_started(run),
                run_ended(status="success", error=None, cancel_action="", rolled_back=False),
            ]
        )
        snapshot = ThreadSnapshot(values={"text": "x", "reply": "echo: x"})
        outcome = RunOutcome(status="success")
        assert finish_run(run=run, outcome=outcome, snapshot=snapshot, journal=journal)


def measure(bench: Bench, runs: int) -> tuple[float, float, int, int]:
    """(admission µs/run, finish µs/run, admission calls/run, finish calls/run)."""
    admit_cpu = finish_cpu = 0.0
    for _ in range(runs):
        start = time.process_time()
        run = bench.admit()
        middle = time.process_time()
        bench.finish(run)
        admit_cpu += middle - start
        finish_cpu += time.process_time() - middle
    calls = []
    for phase in ("admission", "finish"):
        calls.append(_calls(bench, phase, 50) // 50)
    return 1e6 * admit_cpu / runs, 1e6 * finish_cpu / runs, calls[0], calls[1]


def _calls(bench: Bench, phase: str, runs: int) -> int:
    total = 0
    for _ in range(runs):
        run = bench.admit() if phase == "finish" else None
        counter = _CallCounter()
        sys.setprofile(counter)
        try:
            if phase == "admission":
                run = bench.admit()
            else:
                bench.finish(run)
        finally:
            sys.setprofile(None)
        if phase == "admission":
            bench.finish(run)
        total += counter.calls
    return total


class _CallCounter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            self.calls += 1


def profile(bench: Bench, phase: str, runs: int) -> None:
    profiler = cProfile.Profile()
    for _ in range(runs):
        if phase == "admission":
            profiler.enable()
            run = bench.admit()
            profiler.disable()
            bench.finish(run)
        else:
            run = bench.admit()
            profiler.enable()
            bench.finish(run)
            profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", choices=("admission", "finish"))
    args = parser.parse_args()
    inprocess.configure()
    bench = Bench()
    for _ in range(200):  # warm up: caches, the statement cache, the WAL
        bench.finish(bench.admit())
    if args.profile:
        profile(bench, args.profile, args.runs)
        return
    results = [measure(bench, args.runs) for _ in range(args.repeat)]
    admit, finish = min(r[0] for r in results), min(r[1] for r in results)
    print(
        f"{args.runs} runs, best of {args.repeat} (run {uuid.uuid4().hex[:6]}): "
        f"admission {admit:.0f} µs, finish {finish:.0f} µs, "
        f"together {admit + finish:.0f} µs per run; Python calls per run: admission "
        f"{results[0][2]}, finish {results[0][3]}"
    )


if __name__ == "__main__":
    main()
