"""A server a test starts from the session's `live_server_factory` stops at the end of that test
(conftest's `_stop_the_tests_own_servers`); a module-scoped server lives until its module ends.

Before, a server started in a test lived until the session ended: with its embedded worker it
claimed later tests' runs from the shared PostgreSQL database.
"""

import subprocess
from typing import Any

import pytest

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

processes: dict[str, subprocess.Popen[bytes]] = {}


def test_a_test_starts_a_server_of_its_own(live_server_factory: Any, daphne_server: Any) -> None:
    own = live_server_factory.start(DEERFLOW_EMBEDDED_WORKER="false")
    assert own.process.poll() is None
    processes["own"] = own.process
    processes["module"] = daphne_server.process


def test_the_server_a_test_started_stopped_at_its_end(daphne_server: Any) -> None:
    if not processes:
        pytest.skip("runs only after test_a_test_starts_a_server_of_its_own")
    assert processes["own"].poll() is not None  # stopped, not left to the session's end
    assert processes["module"] is daphne_server.process
    assert daphne_server.process.poll() is None  # the module's server still serves
