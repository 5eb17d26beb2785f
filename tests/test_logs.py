"""Structured logs: one JSON object per line when DEERFLOW_LOG_FORMAT=json, and every line about a
run names the run, its thread and the worker."""

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runs.models import Run
from tests.engine_support import make_thread, pending_run
from tests.live import REPO_ROOT, die_with_parent, merge_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 90.0  # a worker process imports Django and LangGraph first


def wait_until_ended(run: Run, worker: subprocess.Popen[bytes], log: Path) -> Run:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if not run.is_active:
            return run
        assert worker.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"the run did not end:\n{log.read_text()}")


def test_json_log_lines_about_a_run_carry_its_run_thread_and_worker(
    user: Any, process_env: dict[str, str], tmp_path: Path
) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, graph_id="failing")
    log = tmp_path / "worker.log"
    json_logs = {"DEERFLOW_LOG_FORMAT": "json", "DEERFLOW_RUN_POLL_SECONDS": "0.1"}
    env = merge_env(process_env, json_logs)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "runs_worker", "--concurrency", "1"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    try:
        run = wait_until_ended(run, worker, log)
    finally:
        worker.terminate()
        worker.wait(30)

    assert run.status == Run.Status.ERROR
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    about_the_run = [line for line in lines if str(run.pk) in line["message"]]
    assert about_the_run, lines
    for line in about_the_run:
        assert line["run_id"] == str(run.pk)
        assert line["thread_id"] == run.thread_id
        assert line["worker_id"] == run.worker_id
    started = next(line for line in lines if "started" in line["message"])
    assert started["worker_id"] == run.worker_id
