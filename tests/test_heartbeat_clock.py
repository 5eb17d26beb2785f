"""The heartbeat clock: one timer per event loop ends the timed waits of every subscription.

Idle streams wait on it between heartbeats: every wait ends (at its deadline or after, never
before), a wait ended by a message or by the client's disconnect leaves it, and a stream whose
client goes away is dropped from it and from its run's group.
"""

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import channel_layers
from django.conf import settings

from deerflow_site.bridge import Executor, call_sync
from runs.engine import Subscription, bus, fanout, publishing
from runs.models import Run

WAIT = 20.0


@pytest.fixture(autouse=True)
async def fresh_layer() -> Any:
    channel_layers.backends.clear()
    yield
    await fanout.stop_listening()
    channel_layers.backends.clear()


def hub() -> Any:
    return fanout._hub_of_this_loop()


async def test_one_clock_ends_every_idle_wait_and_none_before_its_deadline() -> None:
    loop = asyncio.get_running_loop()
    subscriptions = [await Subscription.open(f"clock-{n}") for n in range(300)]

    async def idle_wait(subscription: Subscription, within: float) -> tuple[float, float]:
        began = loop.time()
        assert await subscription.receive(within=within) is None
        return began + within, loop.time()

    waits = [idle_wait(s, 0.2 + (n % 7) * 0.05) for n, s in enumerate(subscriptions)]
    ended = await asyncio.wait_for(asyncio.gather(*waits), WAIT)

    assert all(end >= deadline for deadline, end in ended)
    assert hub().clock.waits == 0
    for subscription in subscriptions:
        await subscription.close()


async def test_a_wait_ended_by_a_message_leaves_the_clock() -> None:
    run_id = uuid.uuid4()
    subscription = await Subscription.open(bus.run_stream_group(run_id))
    waiting = asyncio.create_task(subscription.receive(within=WAIT))
    await asyncio.sleep(0)  # the task runs up to its wait
    assert hub().clock.waits == 1

    await publishing.publish_events(
        run_id=run_id, thread_id="clock-thread", events=[bus.StreamEvent.of(1, "custom", {})]
    )

    assert (await asyncio.wait_for(waiting, WAIT))["id"] == 1
    assert hub().clock.waits == 0
    await subscription.close()


async def test_a_cancelled_wait_leaves_the_clock() -> None:
    subscription = await Subscription.open("clock-cancelled")
    waiting = asyncio.create_task(subscription.receive(within=WAIT))
    await asyncio.sleep(0)  # the task runs up to its wait
    assert hub().clock.waits == 1

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    assert hub().clock.waits == 0
    await subscription.close()


class _Client:
    """One ASGI HTTP connection to the Django application, in this process: a GET, then the
    response's messages as they come, then a disconnect when asked."""

    def __init__(self, path: str, headers: dict[str, str]) -> None:
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})

    async def serve(self) -> None:
        from deerflow_site.asgi import django_application

        await django_application(self.scope, self.incoming.get, self.outgoing.put)

    async def body_until(self, marker: bytes) -> bytes:
        body = b""
        while marker not in body:
            message = await self.outgoing.get()
            body += message.get("body", b"")
        return body


@pytest.mark.django_db(transaction=True)
async def test_idle_streams_all_heartbeat_and_a_disconnected_one_leaves_the_clock(
    api: Any, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "SSE_HEARTBEAT_SECONDS", 0.3)
    thread_id = (
        await call_sync(api.post, "/api/threads", {}, format="json", on=Executor.BLOCKING)
    ).json()["thread_id"]
    created = await call_sync(
        api.post,
        f"/api/threads/{thread_id}/runs",
        {"assistant_id": "echo", "input": {}, "after_seconds": 600},
        format="json",
        on=Executor.BLOCKING,
    )
    run_id = created.json()["run_id"]
    path = f"{settings.API_PREFIX}/threads/{thread_id}/runs/{run_id}/stream"
    clients = [_Client(path, headers) for _ in range(20)]
    served = [asyncio.create_task(client.serve()) for client in clients]

    async with asyncio.timeout(WAIT):
        bodies = await asyncio.gather(
            *(client.body_until(b": heartbeat\r\n\r\n" * 2) for client in clients)
        )
        assert all(body.startswith(b"event: metadata\r\n") for body in bodies)
        group = bus.run_stream_group(uuid.UUID(run_id))
        assert len(hub().subscribers[group]) == 20

        leaving = clients.pop()
        leaving.incoming.put_nowait({"type": "http.disconnect"})
        await served.pop()
        assert len(hub().subscribers[group]) == 19
        assert hub().clock.waits <= 19

        for client in clients:
            client.incoming.put_nowait({"type": "http.disconnect"})
        await asyncio.gather(*served)
    assert group not in hub().subscribers
    assert hub().clock.waits == 0
    await Run.objects.filter(pk=run_id).aupdate(status=Run.Status.INTERRUPTED)
