"""`GET /api/ok` of a live server whose PostgreSQL or Redis goes down: 503, naming which.

The server gets a PostgreSQL and a Redis of its own (scripts/services.py's), so that stopping them
leaves the suite's own servers alone.
"""

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import port_for
import psycopg
import pytest

from tests.cluster import ON_PRODUCTION_STACK
from tests.live import REPO_ROOT, LiveServer, LiveServerFactory, wait_until

pytestmark = [
    pytest.mark.skipif(
        not ON_PRODUCTION_STACK, reason="stops a PostgreSQL and a Redis: the PostgreSQL phase"
    ),
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]


def services_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("services", REPO_ROOT / "scripts/services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def own_servers() -> Iterator[dict[str, Any]]:
    """A PostgreSQL and a Redis of the test's own: their executors and URLs."""
    services = services_module()
    try:
        pg_ctl, redis_server = services.find_pg_ctl(), services.find_redis_server()
    except services.Unavailable as exc:
        pytest.skip(str(exc))
    # PostgreSQL runs as its own OS user when we are root: it must reach this directory.
    workdir = Path(tempfile.mkdtemp(prefix="health-"))
    workdir.chmod(0o711)
    started: dict[str, Any] = {}
    try:
        pg_port = port_for.select_random()
        started["postgres"], started["database_url"] = services.start_postgres(
            workdir, pg_port, pg_ctl
        )
        redis_port = port_for.select_random(exclude_ports=[pg_port])
        started["redis"], started["redis_url"] = services.start_redis(
            workdir, redis_port, redis_server
        )
        yield started
    finally:
        for name in ("redis", "postgres"):
            if name in started and started[name].running():
                started[name].stop()
        shutil.rmtree(workdir, ignore_errors=True)


def local_auth_server(
    live_server_factory: LiveServerFactory,
    own_servers: dict[str, Any],
    manage_py: Any,
    **env: str,
) -> LiveServer:
    """A server on the test's own PostgreSQL (migrated) and Redis, in local auth mode."""
    database = {"DATABASE_URL": own_servers["database_url"]}
    manage_py("migrate", "--noinput", env=database)
    return live_server_factory.start(
        **database,
        REDIS_URL=own_servers["redis_url"],
        DEERFLOW_AUTH_MODE="local",
        DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION="true",
        **env,
    )


def start_accepting(postgres: Any, database_url: str) -> None:
    """Start the stopped PostgreSQL, and wait until it accepts connections (its executor's start
    can return while the server still answers "the database system is starting up")."""
    postgres.start()

    def accepting() -> bool:
        try:
            psycopg.connect(database_url, connect_timeout=5).close()
        except psycopg.OperationalError:
            return False
        return True

    wait_until(accepting, "the restarted PostgreSQL to accept connections")


def test_ok_answers_503_naming_what_is_down_when_redis_then_postgresql_stop(
    live_server_factory: LiveServerFactory, own_servers: dict[str, Any]
) -> None:
    server = live_server_factory.start(
        DATABASE_URL=own_servers["database_url"],
        REDIS_URL=own_servers["redis_url"],
        DEERFLOW_EMBEDDED_WORKER="false",
    )
    ok_url = server.api_url + "/ok"
    with httpx.Client(trust_env=False, timeout=30) as client:
        assert client.get(ok_url).json() == {"ok": True}

        own_servers["redis"].stop()
        response = client.get(ok_url)
        assert response.status_code == 503
        assert response.json()["channel_layer"] is False
        assert response.json()["database"] is True

        own_servers["postgres"].stop()
        response = client.get(ok_url)
        assert response.status_code == 503
        assert response.json()["database"] is False
        assert "database" in response.json()["detail"]
    server.stop()


def test_api_requests_answer_503_json_while_postgresql_is_down_and_serve_once_it_is_back(
    live_server_factory: LiveServerFactory, own_servers: dict[str, Any], manage_py: Any
) -> None:
    server = local_auth_server(
        live_server_factory, own_servers, manage_py, DEERFLOW_EMBEDDED_WORKER="false"
    )
    with httpx.Client(base_url=server.api_url, trust_env=False, timeout=30) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        own_servers["postgres"].stop()
        answers = [
            client.get(f"/threads/{thread_id}"),
            client.post("/threads", json={}),
            client.post("/threads/search", json={}),
            client.post(f"/threads/{thread_id}/runs", json={"assistant_id": "echo"}),
            client.get(f"/threads/{thread_id}/runs/{thread_id}/stream"),
        ]
        start_accepting(own_servers["postgres"], own_servers["database_url"])
        back = client.get(f"/threads/{thread_id}")
    server.stop()

    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert "database is unavailable" in answer.json()["detail"]
        assert answer.headers["retry-after"].isdigit()
    assert back.status_code == 200, back.text


def test_the_first_requests_and_run_after_postgresql_restarted_succeed(
    live_server_factory: LiveServerFactory, own_servers: dict[str, Any], manage_py: Any
) -> None:
    """Every thread that keeps a connection (the request threads, the API's, the engine's)
    notices that a restart dropped it before using it: no 503 once PostgreSQL is back."""
    server = local_auth_server(live_server_factory, own_servers, manage_py)
    echo = {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    with httpx.Client(base_url=server.api_url, trust_env=False, timeout=60) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        assert client.post(f"/threads/{thread_id}/runs/wait", json=echo).status_code == 200
        assert client.get("/ok").status_code == 200
        own_servers["postgres"].stop()
        start_accepting(own_servers["postgres"], own_servers["database_url"])
        answers = [
            client.get("/ok"),
            client.get(f"/threads/{thread_id}"),
            client.post(f"/threads/{thread_id}/runs/wait", json=echo),
        ]
        runs = client.get(f"/threads/{thread_id}/runs").json()
    server.stop()

    assert [answer.status_code for answer in answers] == [200] * 3, [a.text for a in answers]
    assert [run["status"] for run in runs] == ["success", "success"], runs
