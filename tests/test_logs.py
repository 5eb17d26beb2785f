"""Structured logs: one JSON object per line when DEERFLOW_LOG_FORMAT=json, and every line about a
run names the run, its thread and the worker."""

import json
from typing import Any

import pytest

from runs.models import Run
from tests.engine_support import make_thread, pending_run
from tests.live import wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_json_log_lines_about_a_run_carry_its_run_thread_and_worker(
    user: Any, start_worker_process: Any
) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, graph_id="failing")
    json_logs = {"DEERFLOW_LOG_FORMAT": "json", "DEERFLOW_RUN_POLL_SECONDS": "0.1"}
    worker = start_worker_process("--concurrency", "1", **json_logs)

    def ended() -> bool:
        assert worker.process.poll() is None, worker.log()
        run.refresh_from_db()
        return not run.is_active

    wait_until(ended, "the run to end", log=worker.log)
    worker.process.terminate()
    worker.process.wait(30)

    assert run.status == Run.Status.ERROR
    lines = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    about_the_run = [line for line in lines if str(run.pk) in line["message"]]
    assert about_the_run, lines
    for line in about_the_run:
        assert line["run_id"] == str(run.pk)
        assert line["thread_id"] == run.thread_id
        assert line["worker_id"] == run.worker_id
    started = next(line for line in lines if "started" in line["message"])
    assert started["worker_id"] == run.worker_id
