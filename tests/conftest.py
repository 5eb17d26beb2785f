"""Shared fixtures: the test database arrangement, live daphne servers and management commands.

Processes started here (daphne, `manage.py ...`) use the test process's own test database: the
SQLite test database is a file (not pytest-django's default in-memory one) and its URL, or the
PostgreSQL `test_` database's, is passed to them as DATABASE_URL. A test that uses them must commit
what they should see: mark it `@pytest.mark.django_db(transaction=True)`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import pytest_django
from django.conf import settings
from django.db import connections

from tests.live import (
    REPO_ROOT,
    CommandProcess,
    CommandStarter,
    LiveServer,
    LiveServerFactory,
    StartWatch,
    merge_env,
    wait_until,
)

pytest_plugins = [
    "pytester",
    "tests.process_guard",
    "tests.fixtures",
    "tests.node_tools",
    "tests.engine_support",
]

_real_database_names: dict[str, str] = {}


def pytest_report_header() -> list[str]:
    database = settings.DATABASES["default"]
    vendor = database["ENGINE"].rsplit(".", 1)[-1]
    server = f" on {database['HOST']}:{database['PORT']}" if database.get("HOST") else ""
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return [f"database: {vendor}{server}, channel layer: {layer}"]


# --- The test database ------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every transactional test serialized_rollback=True unless it says otherwise.

    A transactional test ends with a flush of the database. With serialized_rollback the rows that
    migrations made (the default API group, ...) are then restored from a snapshot; without it,
    post_migrate handlers re-create some of them under new ids, and every later serialized_rollback
    test fails to restore its snapshot (UNIQUE constraint). So it is all or nothing: all.
    """
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None or not marker.kwargs.get("transaction"):
            continue
        if "serialized_rollback" not in marker.kwargs:
            kwargs = {**marker.kwargs, "serialized_rollback": True}
            item.add_marker(pytest.mark.django_db(*marker.args, **kwargs), append=False)


@pytest.fixture(autouse=True)
def _no_wait_left_unread(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test reads (or closes) the body of every `/wait` and `/join` it starts in this process.

    Such a body is an answer still to come: left unread, its request still waits for its run
    (`runs.engine.answers` keeps the run's entry), and the run goes on executing after the test,
    into the next ones."""
    from runs.engine import answers

    before = set(answers._waiting)
    yield
    left = set(answers._waiting) - before
    assert not left, f"{request.node.nodeid} left the /wait or /join body of runs {left} unread"


@pytest.fixture(autouse=True)
def _runs_settle_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a transactional test, wait (up to 30 s) until no other live process of this host
    still executes a run (see `_runs_executing_elsewhere`).

    Such a test ends with a flush of the database, while a live server's worker may still be
    finishing a run the test started and left (cancelled, or simply not awaited). On PostgreSQL the
    flush's TRUNCATE and the worker's writes then lock the same tables in opposite orders and one
    of them is chosen as a deadlock's victim; when it is the flush, the test errors and the next
    one finds the rows it left. Requesting pytest-django's helper here first makes this teardown
    run before its flush.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    yield
    if not _runs_executing_elsewhere():
        return
    try:
        wait_until(
            lambda: not _runs_executing_elsewhere(),
            "the runs it left executing in another process to end",
            watch=StartWatch(ceiling_seconds=30.0),
        )
    except AssertionError as exc:
        warnings.warn(f"{request.node.nodeid}: {exc}", stacklevel=1)


def _runs_executing_elsewhere() -> bool:
    """Whether a `running` run's worker is another live process of this host.

    A worker's id is `host:pid:suffix` (runs.engine.worker.default_worker_id). Rows a test wrote
    itself with made-up worker ids, and the runs of a process that was killed, are not waited
    for: nothing executes them.
    """
    from runs.models import Run

    host = socket.gethostname()
    running = Run.objects.filter(status=Run.Status.RUNNING).values_list("worker_id", flat=True)
    for worker_id in running:
        worker_host, _, rest = (worker_id or "").partition(":")
        pid = rest.partition(":")[0]
        if worker_host != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE:
                return True
    return False


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Give SQLite a file test database, so that other processes can open it."""
    database = settings.DATABASES["default"]
    _real_database_names["default"] = database["NAME"]
    if database["ENGINE"] == settings.SQLITE_ENGINE:
        path = tmp_path_factory.mktemp("sqlite") / "test_deerflow.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(path)


@pytest.fixture(scope="session")
def django_db_setup(
    django_db_setup: None, django_db_blocker: pytest_django.DjangoDbBlocker
) -> Iterator[None]:
    """pytest-django's, plus: before the PostgreSQL test database is dropped, end the sessions
    still using it (a thread of an async test, a server process just stopped), as DROP DATABASE
    refuses while any are left."""
    yield
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def _test_database_url() -> str:
    """DATABASE_URL of the test database that pytest-django has set up in this process."""
    database = connections["default"].settings_dict
    if database["NAME"] == _real_database_names.get("default"):
        raise pytest.UsageError(
            "the test database is not set up: mark tests that start processes with "
            "@pytest.mark.django_db(transaction=True)"
        )
    if database["ENGINE"] == settings.SQLITE_ENGINE:
        return f"sqlite:///{database['NAME']}"
    credentials = quote(database["USER"] or "", safe="")
    if database["PASSWORD"]:
        credentials += ":" + quote(database["PASSWORD"], safe="")
    port = f":{database['PORT']}" if database["PORT"] else ""
    return f"postgres://{credentials}@{database['HOST']}{port}/{quote(database['NAME'], safe='')}"


@pytest.fixture(scope="session")
def process_env(django_db_setup: None) -> dict[str, str]:
    """The environment for processes that share this test run's database, Redis and settings."""
    return {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "ALLOWED_HOSTS": os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost"),
        "PYTHONUNBUFFERED": "1",
    }


# --- Management commands -----------------------------------------------------------------------


@pytest.fixture
def manage_py(
    process_env: dict[str, str],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `manage.py *args` in a subprocess on the test database; returns the CompletedProcess.

    `env={...}` adds or (with None) removes variables; `check=False` returns a failed run instead
    of failing the test; `timeout` is in seconds. Needs `django_db(transaction=True)`.
    """

    def run(
        *args: str,
        env: dict[str, str | None] | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=merge_env(process_env, env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"manage.py {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture
def start_worker_process(
    process_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., CommandProcess]]:
    """Start `manage.py runs_worker *args` processes on the test database:
    `start_worker_process("--concurrency", "2", DEERFLOW_RUN_LEASE_SECONDS="2")`. Each is killed
    at the end of the test. Needs `django_db(transaction=True)`."""
    starter = CommandStarter(process_env, tmp_path)
    yield lambda *args, **env: starter.start("runs_worker", *args, **env)
    starter.kill_all()


# --- Live daphne servers -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server_factory(
    process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServerFactory]:
    """Start real daphne servers on the test database: `live_server_factory.start(**env)`.

    Each server inherits this process's environment (settings module, Redis, auth mode, ...) with
    DATABASE_URL pointing at the test database. Tests using it need
    `@pytest.mark.django_db(transaction=True)`, so that what they write is committed and visible to
    the server (and so that the test database exists at all), and should be marked `live`.
    """
    factory = LiveServerFactory(process_env, tmp_path_factory.mktemp("live-servers"))
    yield factory
    factory.stop_all()


@pytest.fixture(autouse=True)
def _stop_the_tests_own_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop, at the end of each test, the servers started during it by `live_server_factory`.

    The factory lives for the session (module-scoped servers come from it), so a server a test
    started itself outlived the test: one with the embedded worker went on claiming the next
    tests' runs from the shared PostgreSQL database, and they failed as if their own workers
    had not run them. Servers of module-scoped fixtures started before the test are left to
    their fixture (pytest sets up higher-scoped fixtures first).
    """
    if "live_server_factory" not in request.fixturenames:
        yield
        return
    factory: LiveServerFactory = request.getfixturevalue("live_server_factory")
    mark = factory.started()
    yield
    factory.stop_started_since(mark)


@pytest.fixture(scope="module")
def daphne_server(live_server_factory: LiveServerFactory) -> Iterator[LiveServer]:
    """One daphne server with the inherited configuration, shared by the tests of a module.

    `.url` is http://127.0.0.1:PORT and `.api_url` the API base under it. Tests using it need
    `@pytest.mark.django_db(transaction=True)` (see live_server_factory).
    """
    server = live_server_factory.start()
    yield server
    server.stop()
