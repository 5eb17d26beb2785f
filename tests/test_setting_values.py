"""Every setting the README's configuration table lists refuses a value it cannot use when the
settings load, naming the variable: a process does not start on it, rather than failing later in
a request (a 500 for every run) or in a worker (a lease of 0, no worker slots, a busy loop)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.live import REPO_ROOT
from tests.test_embedded_install import newcomer_env

#: (variable, a value it must refuse): below its minimum, not finite, not whole, not of its kind.
REFUSED = [
    ("DEBUG", "maybe"),
    ("DEERFLOW_DB_CONN_MAX_AGE", "-1"),
    ("DEERFLOW_DB_CONN_MAX_AGE", "nan"),
    ("DATABASE_URL", "nonsense"),
    ("DATABASE_URL", "mysql://db/deerflow"),
    ("REDIS_URL", "localhost:6379"),
    ("REDIS_URL", "http://localhost:6379/0"),
    ("DEERFLOW_PERMISSION_CACHE_SECONDS", "-5"),
    ("DEERFLOW_API_PREFIX", "/"),
    ("DEERFLOW_API_PREFIX", "/a b"),
    ("DEERFLOW_API_PREFIX", "/admin"),
    ("DEERFLOW_API_PREFIX", "static/api"),
    ("DEERFLOW_MAX_BODY_BYTES", "0"),
    ("DEERFLOW_MAX_BODY_BYTES", "1.5"),
    ("DEERFLOW_MAX_JSON_DEPTH", "0"),
    ("DEERFLOW_MAX_JSON_DEPTH", "500"),
    ("DEERFLOW_HTTPS", "maybe"),
    ("DEERFLOW_LOG_LEVEL", "LOUD"),
    ("DEERFLOW_LOG_FORMAT", "xml"),
    ("DEERFLOW_WORKER_CONCURRENCY", "0"),
    ("DEERFLOW_WORKER_CONCURRENCY", "2.5"),
    ("DEERFLOW_RUN_LEASE_SECONDS", "0"),
    ("DEERFLOW_RUN_LEASE_SECONDS", "-1"),
    ("DEERFLOW_RUN_LEASE_SECONDS", "nan"),
    ("DEERFLOW_RUN_LEASE_SECONDS", "inf"),
    ("DEERFLOW_RUN_POLL_SECONDS", "0"),
    ("DEERFLOW_SSE_HEARTBEAT_SECONDS", "0"),
    ("DEERFLOW_STREAM_RETENTION_SECONDS", "-1"),
    ("DEERFLOW_RUN_RETENTION_DAYS", "-1"),
    ("DEERFLOW_CLEANUP_BATCH_SIZE", "0"),
    ("DEERFLOW_CHANNEL_CAPACITY", "0"),
    ("DEERFLOW_WORKER_SHUTDOWN_SECONDS", "-1"),
    ("DEERFLOW_ON_COMPLETION_DELETE_SECONDS", "-1"),
    ("DEERFLOW_JOURNAL_FLUSH_SECONDS", "0"),
    ("DEERFLOW_JOURNAL_BATCH_SIZE", "0"),
    ("DEERFLOW_WEBHOOK_ALLOW_PRIVATE", "sometimes"),
    ("DEERFLOW_WEBHOOK_TIMEOUT_SECONDS", "0"),
    ("DEERFLOW_WEBHOOK_ATTEMPTS", "0"),
    ("DEERFLOW_MAX_ACTIVE_RUNS_PER_USER", "-1"),
    ("DEERFLOW_MAX_BATCH_SIZE", "0"),
    ("DEERFLOW_MAX_RECURSION_LIMIT", "0"),
    ("DEERFLOW_MAX_AFTER_SECONDS", "-1"),
    ("DEERFLOW_SAMPLE_GRAPHS", "2"),
    # Past the largest value of its kind: a date, a LIMIT or a column would overflow on it.
    ("DEERFLOW_RUN_RETENTION_DAYS", "1e10"),
    ("DEERFLOW_STREAM_RETENTION_SECONDS", "1e300"),
    ("DEERFLOW_RUN_LEASE_SECONDS", "1e10"),
    ("DEERFLOW_MAX_AFTER_SECONDS", "1e300"),
    ("DEERFLOW_CLEANUP_BATCH_SIZE", "99999999999999999999"),
    ("DEERFLOW_WORKER_CONCURRENCY", "3e9"),
]

#: Values at the edge that mean something (the README's 0s) load.
ACCEPTED = {
    "DEERFLOW_DB_CONN_MAX_AGE": "0",
    "DEERFLOW_PERMISSION_CACHE_SECONDS": "0",
    "DEERFLOW_RUN_RETENTION_DAYS": "0",
    "DEERFLOW_MAX_ACTIVE_RUNS_PER_USER": "0",
    "DEERFLOW_HSTS_SECONDS": "0",
    "DEERFLOW_RUN_LEASE_SECONDS": "0.5",
    "DEERFLOW_WORKER_CONCURRENCY": "1e1",
    "DEERFLOW_LOG_LEVEL": "debug",
    "DEERFLOW_API_PREFIX": "/v1/agents/",
    "DEERFLOW_HTTPS": "true",
}

PRINT_SETTINGS = (
    "from deerflow_site import settings as s; "
    "print(s.CONN_MAX_AGE, s.RUN_RETENTION_DAYS, s.MAX_ACTIVE_RUNS_PER_USER, "
    "s.SECURE_HSTS_SECONDS, s.RUN_LEASE_SECONDS, s.WORKER_CONCURRENCY, s.LOG_LEVEL, s.API_PREFIX)"
)


def load_settings(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """Import the real settings in a fresh interpreter, as any process of the server does."""
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=REPO_ROOT,
        env=newcomer_env(tmp_path, SECRET_KEY="a-key", **env),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(("name", "value"), REFUSED, ids=[f"{n}={v}" for n, v in REFUSED])
def test_a_setting_refuses_a_value_it_cannot_use_naming_it(tmp_path, name, value):
    result = load_settings(tmp_path, **{name: value})

    assert result.returncode != 0
    [last_line] = result.stderr.strip().splitlines()[-1:]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    assert name in last_line


def test_the_meaningful_edge_values_load(tmp_path):
    result = load_settings(tmp_path, **ACCEPTED)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.0", "0.0", "0", "0", "0.5", "10", "DEBUG", "/v1/agents"]


@pytest.mark.parametrize(
    "command",
    [
        ["manage.py", "check"],
        ["-m", "deerflow_site.server", "-p", "0", "deerflow_site.asgi:application"],
    ],
    ids=["manage.py", "server"],
)
def test_the_server_and_manage_py_say_the_refused_value_in_one_line(tmp_path, command):
    result = subprocess.run(
        [sys.executable, *command],
        cwd=REPO_ROOT,
        env=newcomer_env(tmp_path, SECRET_KEY="a-key", DEERFLOW_RUN_LEASE_SECONDS="0"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "configuration error: DEERFLOW_RUN_LEASE_SECONDS must be a finite number greater than 0 "
        "and at most 1000000000, got '0'"
    ]
