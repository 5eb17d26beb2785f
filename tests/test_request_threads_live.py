"""Short requests run on pooled threads that keep their database connection between requests
(deerflow_site.bridge.request_thread, DEERFLOW_DB_CONN_MAX_AGE), and long responses and the run
engine on executor threads that keep theirs (Executor.API, Executor.ENGINE): a connection the
database dropped meanwhile (as a restart of PostgreSQL drops them all) is noticed before the next
request or run uses it, which succeeds the first time."""

import asyncio

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


@pytest.fixture(params=["without a worker"])
async def server_and_http(request, live_server_factory, user):
    """A server without a worker (PostgreSQL only), and an httpx client of it as `user`; with
    its embedded worker when parametrised "with a worker" (indirectly)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    worker = "true" if request.param == "with a worker" else "false"
    server = live_server_factory.start(DEERFLOW_EMBEDDED_WORKER=worker)
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


async def test_the_api_threads_answer_at_once_after_the_database_dropped_their_connections(
    server_and_http,
) -> None:
    """Executor.API's threads (a health check, streams, waits, joins) keep their connections
    between calls: each answered one 503 after a restart of PostgreSQL before a check before
    each call noticed a dropped connection."""
    server, http = server_and_http
    concurrent = 6  # several of the API's threads, each with its connection
    for answer in await asyncio.gather(*(http.get("/ok") for _ in range(concurrent))):
        assert answer.status_code == 200, answer.text
    assert (
        await call_sync(drop_connections_of, server.process.pid, on=Executor.THREAD_SENSITIVE) >= 1
    )
    for _ in range(2):
        answers = await asyncio.gather(*(http.get("/ok") for _ in range(concurrent)))
        assert [a.status_code for a in answers] == [200] * concurrent, [a.text for a in answers]


@pytest.mark.parametrize("server_and_http", ["with a worker"], indirect=True)
async def test_a_run_after_the_database_dropped_the_engines_connection_succeeds(
    server_and_http,
) -> None:
    """The engine's database thread keeps its connection between calls: the first run after a
    restart of PostgreSQL is admitted, runs and is answered as any other."""
    server, http = server_and_http
    thread_id = (await http.post("/threads", json={})).json()["thread_id"]
    echo = {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    first = await http.post(f"/threads/{thread_id}/runs/wait", json=echo, timeout=30)
    assert first.status_code == 200, first.text
    assert (
        await call_sync(drop_connections_of, server.process.pid, on=Executor.THREAD_SENSITIVE) >= 1
    )
    again = await http.post(f"/threads/{thread_id}/runs/wait", json=echo, timeout=30)
    assert again.status_code == 200, again.text
    runs = (await http.get(f"/threads/{thread_id}/runs")).json()
    assert [run["status"] for run in runs] == ["success", "success"], runs
