"""Run events reach waiting clients through the channel layer, not the database fallback.

The servers here look at the database for a lost `end` only every two minutes, so a wait that
finishes promptly proves that the bus delivered it: on Redis this is channels_redis sharing one
receive lock between the worker's channel and the stream views' in one process.
"""

import asyncio

import pytest

from tests.fixtures import sdk_client, token_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DB_FALLBACK_SECONDS = 120  # two heartbeats of 60 s
PROMPT = 30  # far below the fallback, far above any run of `echo`


@pytest.fixture(scope="module")
def slow_fallback_server(live_server_factory):
    server = live_server_factory.start(DEERFLOW_SSE_HEARTBEAT_SECONDS=str(DB_FALLBACK_SECONDS / 2))
    yield server
    server.stop()


@pytest.fixture
def client(slow_fallback_server, user, closing):
    return sdk_client(closing, slow_fallback_server.api_url, token_for(user))


async def test_waits_end_by_the_bus_with_the_embedded_worker(client):
    thread = await client.threads.create()
    for _ in range(3):
        values = await asyncio.wait_for(
            client.runs.wait(thread["thread_id"], "echo", input={"messages": []}), PROMPT
        )
        assert "messages" in values


async def test_joined_streams_end_by_the_bus_with_the_embedded_worker(client):
    thread = await client.threads.create()
    # Still running when joined: its end can only come live.
    run = await client.runs.create(thread["thread_id"], "slow", input={"steps": 5, "delay": 0.2})

    async def events() -> list[str]:
        stream = client.runs.join_stream(thread["thread_id"], run["run_id"])
        return [part.event async for part in stream]

    assert "values" in await asyncio.wait_for(events(), PROMPT)
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"
