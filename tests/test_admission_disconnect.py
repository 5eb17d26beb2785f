"""A client that leaves while its run is being admitted: the admission commits on its thread
after the view awaiting it was cancelled, and the run is cancelled as its `on_disconnect` asks
(runs.cancellation.AdmissionWatch), not left running for nobody."""

import asyncio
import json
import threading
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction

from deerflow_site.asgi import django_application
from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from tests.engine_support import make_thread, wait_for_status
from tests.fixtures import token_for
from tests.waiting import in_database, read_until
from threads.models import Thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer", "closing_checkpointer"),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs a row lock another connection waits on, and a view of who waits",
    ),
]

SLOW_INPUT = {"steps": 600, "delay": 0.1}


class ThreadRowLock:
    """The thread's row locked by another connection until `release()`: admission waits."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.locked = threading.Event()
        self.released = threading.Event()
        self.worker = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        try:
            with transaction.atomic():
                Thread.objects.select_for_update().filter(pk=self.thread_id).exists()
                self.locked.set()
                self.released.wait(30)
        finally:
            connection.close()

    def __enter__(self) -> "ThreadRowLock":
        self.worker.start()
        assert self.locked.wait(10)
        return self

    def release(self) -> None:
        self.released.set()
        self.worker.join(10)

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


class LeavingClient:
    """One connection: the request's body, then a disconnect when the test says so."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait(
            {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        )
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})


def request_scope(path: str, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def leave_during_admission(user: Any, endpoint: str, body: dict[str, Any]) -> Run:
    """POST `endpoint` of a new thread, leave while admission waits for the thread's row, then
    let admission commit: the run it admitted."""
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    token = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    path = f"{settings.API_PREFIX}/threads/{thread.pk}/runs/{endpoint}"
    client = LeavingClient({"assistant_id": "slow", "input": SLOW_INPUT, **body})
    with ThreadRowLock(thread.pk) as lock:
        handler = asyncio.create_task(
            django_application(request_scope(path, token), client.receive, client.send)
        )
        await read_until(in_database(lock_waiters), "admission to wait for the thread's row")
        client.leave()
        await asyncio.wait_for(handler, 10)  # the view was cancelled: nothing was answered
        assert not any(m["type"] == "http.response.body" and m.get("body") for m in client.sent)
        lock.release()
    admitted = Run.objects.filter(thread_id=thread.pk).exists
    await read_until(in_database(admitted), "admission to commit the run")
    return await call_sync(
        lambda: Run.objects.get(thread_id=thread.pk), on=Executor.THREAD_SENSITIVE
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", ["wait", "stream"])
async def test_a_run_admitted_after_its_client_left_is_cancelled(user: Any, endpoint: str) -> None:
    run = await leave_during_admission(user, endpoint, {})  # on_disconnect: cancel (default)
    ended = await wait_for_status(run.pk, Run.Status.INTERRUPTED)
    assert ended.cancel_action == Run.CancelAction.INTERRUPT


@pytest.mark.asyncio
async def test_a_run_that_asked_to_continue_goes_on_after_its_client_left(user: Any) -> None:
    run = await leave_during_admission(user, "wait", {"on_disconnect": "continue"})
    assert run.status in (Run.Status.PENDING, Run.Status.RUNNING)
    assert run.cancel_action in ("", None)
