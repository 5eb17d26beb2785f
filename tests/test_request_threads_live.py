"""Short requests run on pooled threads that keep their database connection between requests
(deerflow_site.bridge.request_thread, DEERFLOW_DB_CONN_MAX_AGE): a connection the database
dropped meanwhile is noticed before the next request uses it."""

import httpx
import psutil
import pytest
from django.db import connection

from deerflow_site.bridge import Executor, call_sync
from tests.fixtures import token_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def drop_connections_of(pid: int) -> int:
    """End the database sessions of process `pid` (found by their client ports); how many."""
    ports = [c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND client_port = ANY(%s)",
            [ports],
        )
        return cursor.fetchone()[0]


@pytest.fixture
async def server_and_http(live_server_factory, user):
    """A server without a worker (PostgreSQL only), and an httpx client of it as `user`."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    server = live_server_factory.start(DEERFLOW_EMBEDDED_WORKER="false")
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    async with httpx.AsyncClient(
        base_url=server.api_url, headers={"Authorization": f"Bearer {key}"}, trust_env=False
    ) as http:
        yield server, http
    server.stop()


async def test_requests_after_the_database_dropped_the_servers_connections_succeed(
    server_and_http,
) -> None:
    server, http = server_and_http
    first = await http.post("/threads", json={})
    assert first.status_code == 200, first.text
    assert (
        await call_sync(drop_connections_of, server.process.pid, on=Executor.THREAD_SENSITIVE) >= 1
    )
    for _ in range(3):
        again = await http.get(f"/threads/{first.json()['thread_id']}")
        assert again.status_code == 200, again.text


async def test_a_sync_view_on_a_long_lived_path_recovers_after_the_database_dropped_it(
    server_and_http,
) -> None:
    """A path ending like a stream, a wait or a join (a thread named `stream`) is served off the
    request threads: its sync view runs on asgiref's shared thread, whose connection needs the
    same upkeep (it answered 500 for ever once the database had dropped it)."""
    server, http = server_and_http
    for thread_id in ("stream", "wait", "join"):
        created = await http.post("/threads", json={"thread_id": thread_id})
        assert created.status_code == 200, created.text
        assert (await http.get(f"/threads/{thread_id}")).status_code == 200
    assert (
        await call_sync(drop_connections_of, server.process.pid, on=Executor.THREAD_SENSITIVE) >= 1
    )
    for _ in range(2):
        for thread_id in ("stream", "wait", "join"):
            again = await http.get(f"/threads/{thread_id}")
            assert again.status_code == 200, (thread_id, again.text)
