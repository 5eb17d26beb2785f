"""The admin as a run console in headless Chromium (tests/js/admin.test.mjs): staff log in, filter
runs to `running`, cancel one and see it `interrupted`.

Chromium and Node.js come from tests/node_tools.py: with CI=true their absence fails this test,
elsewhere it skips it with the reason.
"""

from typing import Any

import pytest
from django.contrib.auth.models import Permission

from runs.models import Run
from tests.engine_support import make_thread, pending_run
from tests.live import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "pw-12345!"  # what make_user gives


def running(run: Run) -> Run:
    """The run once the live server's embedded worker executes it."""

    def claimed() -> bool:
        run.refresh_from_db()
        return run.status == Run.Status.RUNNING

    wait_until(claimed, "the server's worker to claim the run")
    return run


def test_staff_filter_runs_to_running_cancel_one_and_see_it_interrupted(
    run_browser_tests: Any, daphne_server: Any, make_user: Any, user: Any
) -> None:
    staff = make_user("console-staff", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "cancel_run"]))
    long_run = {"steps": 2000, "delay": 0.05}
    run = running(
        pending_run(thread=make_thread(user=user), user=user, graph_id="slow", input=long_run)
    )

    run_browser_tests(
        "admin.test.mjs",
        daphne_server,
        DEERFLOW_LOGIN_USERNAME=staff.username,
        DEERFLOW_LOGIN_PASSWORD=PASSWORD,
        DEERFLOW_RUN_ID=str(run.pk),
    )

    run.refresh_from_db()
    assert run.status == Run.Status.INTERRUPTED
