"""A stream ends once its viewer may no longer view the thread (a share revoked during a run),
through real daphne: a run's join (`GET|POST /threads/{t}/runs/{r}/stream`) and the thread's
stream, mid-run. The right is read again at most every SSE_HEARTBEAT_SECONDS while events are
sent (runs/sse/access.py), never per event; the run itself goes on."""

import asyncio
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Group
from guardian.shortcuts import assign_perm, remove_perm

from deerflow_site.bridge import Executor, call_sync
from threads.models import Thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

#: A run of about a minute: a step (and its events) every 0.1 s.
LONG = {"steps": 600, "delay": 0.1}


def _share(thread_id: str, user: Any, grant: Any) -> None:
    group, _ = Group.objects.get_or_create(name="thread viewers")
    group.user_set.add(user)
    grant("view_thread", group, Thread.objects.get(pk=thread_id))


async def _shared_long_run(sdk: Any, other_user: Any) -> tuple[str, str]:
    """A thread shared with `other_user` to view, and a long run of it going on."""
    thread_id = (await sdk.threads.create())["thread_id"]
    await call_sync(_share, thread_id, other_user, assign_perm, on=Executor.THREAD_SENSITIVE)
    run = await sdk.runs.create(thread_id, "slow", input=LONG)
    return thread_id, run["run_id"]


async def _revoke_after_a_tick(parts: list, thread_id: str, other_user: Any, came: Any) -> None:
    async with asyncio.timeout(60):
        while not any(event not in ("metadata", None) for event, _ in parts):
            came.clear()
            await came.wait()
    await call_sync(_share, thread_id, other_user, remove_perm, on=Executor.THREAD_SENSITIVE)


async def _ends_mid_run(sdk: Any, thread_id: str, run_id: str, parts: list) -> None:
    """The stream ended while the run still runs: no `end`, and the run is cancelled here."""
    try:
        assert "end" not in {event for event, _ in parts}
        assert (await sdk.runs.get(thread_id, run_id))["status"] == "running"
    finally:
        await sdk.runs.cancel(thread_id, run_id, wait=True)


async def test_a_join_of_the_sdk_ends_when_the_share_is_revoked_mid_run(
    sdk: Any, other_sdk: Any, other_user: Any
) -> None:
    thread_id, run_id = await _shared_long_run(sdk, other_user)
    parts: list = []
    came = asyncio.Event()

    async def read() -> None:
        async for part in other_sdk.runs.join_stream(thread_id, run_id):
            parts.append((part.event, part.data))
            came.set()

    reader = asyncio.ensure_future(read())
    await _revoke_after_a_tick(parts, thread_id, other_user, came)
    await asyncio.wait_for(reader, 30)  # the stream ended (the SDK's run check: a 404)

    await _ends_mid_run(sdk, thread_id, run_id, parts)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_raw_join_ends_when_the_share_is_revoked_mid_run(
    daphne_server: Any, sdk: Any, other_user: Any, method: str
) -> None:
    from tests.fixtures import token_for

    thread_id, run_id = await _shared_long_run(sdk, other_user)
    token = await call_sync(token_for, other_user, on=Executor.THREAD_SENSITIVE)
    parts: list = []
    came = asyncio.Event()

    async def read() -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        url = f"{daphne_server.url}/api/threads/{thread_id}/runs/{run_id}/stream"
        async with httpx.AsyncClient(timeout=60) as client:
            async with client.stream(method, url, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        parts.append((line.removeprefix("event: "), None))
                        came.set()

    reader = asyncio.ensure_future(read())
    await _revoke_after_a_tick(parts, thread_id, other_user, came)
    await asyncio.wait_for(reader, 30)  # the server closed the response

    await _ends_mid_run(sdk, thread_id, run_id, parts)


async def test_a_thread_stream_ends_mid_run_when_the_share_is_revoked(
    sdk: Any, other_sdk: Any, other_user: Any
) -> None:
    thread_id = (await sdk.threads.create())["thread_id"]
    await call_sync(_share, thread_id, other_user, assign_perm, on=Executor.THREAD_SENSITIVE)
    parts: list = []
    came = asyncio.Event()
    stream = await other_sdk.threads.join_stream(thread_id)

    async def read() -> None:
        async for part in stream:
            parts.append((part.event, part.data))
            came.set()

    reader = asyncio.ensure_future(read())
    try:
        # The stream sends nothing before a run: this one's events come once it listens.
        run_id = (await sdk.runs.create(thread_id, "slow", input=LONG))["run_id"]
        await _revoke_after_a_tick(parts, thread_id, other_user, came)
        await asyncio.wait_for(asyncio.shield(reader), 30)
    finally:
        reader.cancel()

    await _ends_mid_run(sdk, thread_id, run_id, parts)


@pytest.fixture
def quick_recheck_server(live_server_factory: Any) -> Any:
    """A server that reads a viewer's right again after 0.3 s (SSE_HEARTBEAT_SECONDS), stopped
    after the test."""
    server = live_server_factory.start(DEERFLOW_SSE_HEARTBEAT_SECONDS="0.3")
    yield server
    server.stop()


async def test_a_join_answers_no_state_once_the_share_is_revoked(
    quick_recheck_server: Any, user: Any, other_user: Any
) -> None:
    """`GET …/join` sends the run's final state at its end: a viewer whose share was revoked
    during the run gets `{__error__: NotFound}` instead (it got the state)."""
    from langgraph_sdk import get_client

    from tests.fixtures import token_for

    def client(who: Any) -> Any:
        return get_client(url=quick_recheck_server.api_url, api_key=token_for(who))

    owner = await call_sync(client, user, on=Executor.THREAD_SENSITIVE)
    viewer = await call_sync(client, other_user, on=Executor.THREAD_SENSITIVE)
    thread_id, run_id = await _shared_long_run(owner, other_user)
    joined = asyncio.ensure_future(viewer.runs.join(thread_id, run_id))
    ticks = 0
    async for part in owner.runs.join_stream(thread_id, run_id):
        ticks += part.event == "values"
        if ticks == 10:  # a second of the run after the join began: past the recheck interval
            break
    await call_sync(_share, thread_id, other_user, remove_perm, on=Executor.THREAD_SENSITIVE)
    await owner.runs.cancel(thread_id, run_id, wait=True)

    answer = await asyncio.wait_for(joined, 30)
    assert answer == {
        "__error__": {"error": "NotFound", "message": "The thread is no longer visible to you."}
    }
