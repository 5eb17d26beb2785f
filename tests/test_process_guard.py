"""tests/process_guard.py: a test that leaves a process running errors at its teardown, naming
the process, which is killed; a module-scoped fixture's processes live until it is finalized.

Each case is a pytest run of its own (pytester, in a subprocess), with only the guard loaded.
"""

import contextlib
import os
from pathlib import Path

import psutil
import pytest

from tests.live import REPO_ROOT

pytestmark = pytest.mark.live

SLEEPER = '[sys.executable, "-c", "import time; time.sleep(600)"]'
PARENT_OF_A_SLEEPER = (
    '[sys.executable, "-c", "import subprocess, sys, time; '
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    'time.sleep(600)"]'
)

CASES = f"""
import subprocess
import sys
import time

import psutil
import pytest


@pytest.fixture(scope="module")
def module_server():
    process = subprocess.Popen({SLEEPER})
    yield process
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def forgetful_module_server():
    yield subprocess.Popen({SLEEPER})  # never stopped


@pytest.fixture
def parent_only():
    started = []
    yield lambda: started.append(subprocess.Popen({PARENT_OF_A_SLEEPER})) or started[-1]
    for process in started:  # kills the parent only: its child is orphaned, not stopped
        process.kill()
        process.wait()


def test_stops_what_it_starts():
    process = subprocess.Popen({SLEEPER})
    process.kill()
    process.wait()


def test_leaves_a_child_running():
    subprocess.Popen({SLEEPER})


def test_leaves_an_orphaned_grandchild_running(parent_only):
    parent = parent_only()
    while not psutil.Process(parent.pid).children():
        time.sleep(0.05)


def test_a_module_server_is_its_fixtures(module_server):
    assert module_server.poll() is None


def test_a_module_server_lives_on_between_tests(module_server):
    assert module_server.poll() is None


def test_a_module_fixture_that_never_stops_its_server(forgetful_module_server):
    assert forgetful_module_server.poll() is None
"""


def test_the_guard_names_and_kills_each_process_a_test_leaves_running(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makeconftest('pytest_plugins = ["tests.process_guard"]')
    pytester.makepyfile(test_cases=CASES)

    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=6, errors=3)
    for test in (
        "test_leaves_a_child_running",
        "test_leaves_an_orphaned_grandchild_running",
        "test_a_module_fixture_that_never_stops_its_server",
    ):
        result.stdout.fnmatch_lines(
            [f"test_cases.py::{test} left 1 process(es) running after its teardown*", "  pid *"]
        )
    output = result.stdout.str()
    for test in (
        "stops_what_it_starts",
        "a_module_server_is_its_fixtures",
        "a_module_server_lives",
    ):
        assert f"test_{test}" not in output
    # Nothing the cases started is left: the guard killed what the tests left. (This process
    # runs there too: pytester made it its working directory.)
    left = [process for process in psutil.process_iter() if _runs_in(process, pytester.path)]
    assert [process.pid for process in left] == [os.getpid()]


def _runs_in(process: psutil.Process, directory: Path) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.status() != psutil.STATUS_ZOMBIE and process.cwd() == str(directory)
    return False
