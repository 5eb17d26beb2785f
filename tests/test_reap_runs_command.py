"""`manage.py reap_runs` says each run once: in the log when the log takes warnings, else on
stdout; the dry run lists them on stdout (nothing is logged, nothing changes)."""

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from runs.models import Run
from tests.engine_support import make_thread, pending_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def expired_runs(user: Any, fresh_channel_layer: Any) -> list[Run]:
    """Two running runs whose worker is gone (their lease ran out long ago)."""
    runs = [pending_run(thread=make_thread(user=user), user=user, input={}) for _ in range(2)]
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(
        status=Run.Status.RUNNING, worker_id="gone", lease_expires_at="2000-01-01T00:00:00Z"
    )
    return runs


@pytest.fixture
def app_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What the apps' loggers write (they do not propagate to the root, where caplog listens)."""
    logger = logging.getLogger("runs")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def reap(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("reap_runs", *args, stdout=out)
    return out.getvalue().splitlines()


def lines_naming(run: Run, printed: list[str], log: pytest.LogCaptureFixture) -> list[str]:
    said = printed + [record.getMessage() for record in log.records]
    return [line for line in said if str(run.pk) in line]


def test_reap_runs_says_each_run_once_when_the_log_takes_warnings(expired_runs, app_log):
    printed = reap()

    for run in expired_runs:
        assert len(lines_naming(run, printed, app_log)) == 1, (printed, app_log.text)
    assert printed[-1] == "reaped 2 run(s)"
    assert Run.objects.filter(status=Run.Status.ERROR).count() == 2


def test_reap_runs_prints_each_run_once_when_the_log_leaves_warnings_out(expired_runs, app_log):
    app_log.set_level(logging.ERROR, logger="runs")

    printed = reap()

    for run in expired_runs:
        assert lines_naming(run, printed, app_log) == [
            f"reaped run {run.pk} of thread {run.thread_id} (worker gone)"
        ]
    assert printed[-1] == "reaped 2 run(s)"


def test_reap_runs_dry_run_lists_each_run_once_and_changes_nothing(expired_runs, app_log):
    printed = reap("--dry-run")

    for run in expired_runs:
        assert lines_naming(run, printed, app_log) == [
            f"would reap run {run.pk} of thread {run.thread_id} (worker gone)"
        ]
    assert Run.objects.filter(status=Run.Status.RUNNING).count() == 2
