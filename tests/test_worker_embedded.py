"""The embedded worker inside a real daphne process (the default install)."""

from typing import Any

import httpx
import pytest

from runs.models import Run
from tests.engine_support import make_thread, pending_run
from tests.live import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def test_daphne_runs_queued_runs_with_its_embedded_worker(user: Any, daphne_server: Any) -> None:
    run = pending_run(thread=make_thread(user=user), user=user, input={})

    wait_until(
        lambda: Run.objects.get(pk=run.pk).status == Run.Status.SUCCESS,
        "the embedded worker to run it",
        log=lambda: daphne_server.output()[-5000:],
    )


def test_info_and_startup_log_name_the_agent_model(daphne_server: Any, headers: Any) -> None:
    info = httpx.get(daphne_server.api_url + "/info", headers=headers, trust_env=False).json()

    assert info["agent_model"] == "scripted (offline)"
    wait_until(
        lambda: "agent model scripted (offline)" in daphne_server.output(),
        "the startup log line naming the agent model",
        log=lambda: daphne_server.output()[-5000:],
    )
