"""Idle streams on a live server with a short heartbeat: heartbeats, lost ends, retention gaps."""

import asyncio
import json
import re

import httpx
import pytest

from runs.models import Run, RunStreamEvent
from tests.fixtures import sdk_client, streamed_resumable_run, token_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HEARTBEAT_SECONDS = 0.3


@pytest.fixture(scope="module")
def quick_server(live_server_factory):
    server = live_server_factory.start(DEERFLOW_SSE_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS))
    yield server
    server.stop()


@pytest.fixture
def sdk(quick_server, user, closing):
    return sdk_client(closing, quick_server.api_url, token_for(user))


@pytest.fixture
def client(quick_server, user):
    return httpx.AsyncClient(
        base_url=quick_server.api_url,
        headers={"Authorization": f"Bearer {token_for(user)}"},
        trust_env=False,
        timeout=20,
    )


async def test_a_delayed_run_keeps_its_stream_alive_with_heartbeats(sdk, client):
    thread_id = (await sdk.threads.create())["thread_id"]
    async with client.stream(
        "POST",
        f"/threads/{thread_id}/runs/stream",
        json={"assistant_id": "echo", "input": {}, "after_seconds": 1.5},
    ) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    before_values = body.split(b"event: values")[0]
    assert before_values.count(b": heartbeat\r\n\r\n") >= 2
    assert re.search(rb"event: end\r\ndata: null\r\nid: \d+\r\n\r\n$", body)


async def test_wait_sends_whitespace_while_the_run_goes_on_and_then_json(sdk, client):
    thread_id = (await sdk.threads.create())["thread_id"]
    response = await client.post(
        f"/threads/{thread_id}/runs/wait",
        json={"assistant_id": "slow", "input": {"steps": 4, "delay": 0.25}},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    run_id = response.headers["content-location"].rsplit("/", 1)[1]
    assert response.headers["location"] == f"/threads/{thread_id}/runs/{run_id}/join"
    assert response.content.startswith(b"\n")
    assert json.loads(response.content)["count"] == 4


async def test_a_stream_whose_end_message_was_lost_ends_from_the_database(sdk):
    thread_id = (await sdk.threads.create())["thread_id"]
    run = await sdk.runs.create(thread_id, "echo", input={}, after_seconds=60)

    stream = sdk.runs.join_stream(thread_id, run["run_id"])
    # Well before the run's due time (60 s), and no `end` will ever be published: only the
    # database's status can end the stream (a fixed 1.7 s bound failed on a loaded machine).
    async with asyncio.timeout(30):
        parts = [await anext(stream)]  # `metadata`: the stream is joined
        await Run.objects.filter(pk=run["run_id"]).aupdate(status="interrupted")
        parts += [part async for part in stream]
    assert [part.event for part in parts] == ["metadata", "end"]


async def test_every_stream_and_wait_of_a_run_whose_end_was_lost_ends_from_the_database(sdk):
    thread_id = (await sdk.threads.create())["thread_id"]
    run = await sdk.runs.create(thread_id, "echo", input={}, after_seconds=60)
    streams = [sdk.runs.join_stream(thread_id, run["run_id"]) for _ in range(3)]
    seen = [[(await anext(stream)).event] for stream in streams]  # each one is joined
    waiting = asyncio.create_task(sdk.runs.join(thread_id, run["run_id"]))

    await Run.objects.filter(pk=run["run_id"]).aupdate(status="interrupted")

    # One status check of the run in the server, shared by its streams and its wait.
    async with asyncio.timeout(30):
        for events, stream in zip(seen, streams, strict=True):
            events.extend([part.event async for part in stream])
        await waiting
    assert seen == [["metadata", "end"]] * 3


async def test_a_last_event_id_older_than_what_is_kept_gets_a_gap(sdk):
    thread_id = (await sdk.threads.create())["thread_id"]
    live = await streamed_resumable_run(sdk, thread_id, steps=4)
    run_id = live[0].data["run_id"]
    await RunStreamEvent.objects.filter(run_id=run_id, seq__lte=2).adelete()  # retention

    parts = [part async for part in sdk.runs.join_stream(thread_id, run_id, last_event_id="1")]

    assert [part.event for part in parts] == ["metadata", "gap"]
    assert parts[0].id is None  # a resumed connection: the client keeps its last id
    assert parts[1].data["first_available_id"] == 3
    assert parts[1].id == "2"
