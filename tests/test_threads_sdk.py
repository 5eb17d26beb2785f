"""The official langgraph_sdk client drives the threads API on a live daphne server."""

import httpx
import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError

from threads.models import Thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def test_sdk_creates_gets_updates_searches_and_deletes_a_thread(sdk):
    thread = await sdk.threads.create(metadata={"project": "deer", "n": 1})
    thread_id = thread["thread_id"]
    assert thread["status"] == "idle"

    assert (await sdk.threads.get(thread_id))["metadata"] == {"project": "deer", "n": 1}

    updated = await sdk.threads.update(thread_id, metadata={"n": 2})
    assert updated["metadata"] == {"project": "deer", "n": 2}

    found = await sdk.threads.search(metadata={"project": "deer"}, limit=5)
    assert [t["thread_id"] for t in found] == [thread_id]
    assert await sdk.threads.count(metadata={"n": 2}) == 1

    await sdk.threads.delete(thread_id)
    with pytest.raises(NotFoundError):
        await sdk.threads.get(thread_id)


async def test_sdk_create_with_if_exists(sdk):
    await sdk.threads.create(thread_id="fixed-id")
    with pytest.raises(ConflictError):
        await sdk.threads.create(thread_id="fixed-id")
    same = await sdk.threads.create(thread_id="fixed-id", if_exists="do_nothing")
    assert same["thread_id"] == "fixed-id"


async def test_sdk_never_sees_another_users_thread(sdk, other_sdk):
    theirs = await other_sdk.threads.create()
    with pytest.raises(NotFoundError):
        await sdk.threads.get(theirs["thread_id"])
    with pytest.raises(NotFoundError):
        await sdk.threads.delete(theirs["thread_id"])
    assert await sdk.threads.search() == []
    assert await Thread.objects.filter(pk=theirs["thread_id"]).aexists()


def test_live_server_sends_cors_headers_for_allowed_origins(daphne_server):
    response = httpx.options(
        daphne_server.api_url + "/threads",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type,last-event-id",
        },
        trust_env=False,
    )
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "x-api-key", "last-event-id", "content-type", "x-csrftoken"):
        assert header in allowed


def test_live_server_answers_json_404_for_unknown_api_paths(daphne_server):
    response = httpx.get(daphne_server.api_url + "/no/such/endpoint", trust_env=False)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
