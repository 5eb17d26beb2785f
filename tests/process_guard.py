"""A test leaves no process running: every process started during a test (a child or grandchild
of pytest) has ended when the test's teardown is over, or the teardown errors naming it.

A process that outlived its test ran on into the next ones: a busy grandchild spun on one of CI's
two cores and starved them, a daphne server with the embedded worker claimed their runs from the
shared PostgreSQL database. The processes of module- and session-scoped fixtures (the servers of
`daphne_server` and its kind) are theirs until those fixtures are finalized, when they must have
ended too.

Two scans of pytest's descendants per test (psutil, a few milliseconds each): at the end of the
test's call, which also sees grandchildren that a killed parent would orphan, and at the end of
its teardown. A process left running is killed with its children, so that it harms no later test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable

import psutil
import pytest

#: A process, told apart from a later one that reuses its pid.
Key = tuple[int, float]

_pytest = psutil.Process()
_before: set[Key] | None = None  # pytest's descendants when the current test began
_during: set[Key] = set()  # those found at the end of its call
_owned: dict[Key, str] = {}  # processes of live module/session-scoped fixtures: which one
_released: set[Key] = set()  # processes of such fixtures finalized during this teardown


def _key(process: psutil.Process) -> Key | None:
    try:
        return (process.pid, process.create_time())
    except psutil.Error:
        return None


def _descendants() -> set[Key]:
    keys = (_key(child) for child in _pytest.children(recursive=True))
    return {key for key in keys if key is not None}


def _running(key: Key) -> psutil.Process | None:
    """The process if it still runs (a zombie has ended: only its parent has not reaped it)."""
    try:
        process = psutil.Process(key[0])
        if process.create_time() != key[1] or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def _describe(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline())[:300] or process.name()
    except psutil.Error:
        command = "?"
    return f"pid {process.pid}: {command}"


def _kill(processes: Iterable[psutil.Process]) -> None:
    tree: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            tree += [process, *process.children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(tree, timeout=10)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> object:
    """Note the processes a module- or session-scoped fixture starts: they outlive the test."""
    if fixturedef.scope == "function":
        return (yield)
    before = _descendants()
    try:
        return (yield)
    finally:
        for key in _descendants() - before:
            _owned.setdefault(key, f"{fixturedef.scope}-scoped fixture {fixturedef.argname}")


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef) -> None:
    """A wider-scoped fixture is finalized: its processes must have ended, as a test's must."""
    if fixturedef.scope == "function":
        return
    owner = f"{fixturedef.scope}-scoped fixture {fixturedef.argname}"
    for key, name in list(_owned.items()):
        if name == owner:
            del _owned[key]
            _released.add(key)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    global _before
    if _before is None:
        _before = _descendants()
    _during.clear()
    _released.clear()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        _during.update(_descendants())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    global _before
    try:
        return (yield)
    finally:
        after = _descendants()
        started = ((_during | after) - (_before or set()) - _owned.keys()) | _released
        left = [process for key in sorted(started) if (process := _running(key)) is not None]
        listed = "\n".join(f"  {_describe(process)}" for process in left)
        _kill(left)
        _before = _descendants() if left else after
        if left:
            pytest.fail(
                f"{item.nodeid} left {len(left)} process(es) running after its teardown (killed"
                " now): a test, or a fixture by its own teardown, stops what it started\n"
                f"{listed}",
                pytrace=False,
            )
