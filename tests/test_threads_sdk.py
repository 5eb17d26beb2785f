"""The official langgraph_sdk client drives the threads API on a live daphne server."""

import httpx
import pytest
from guardian.shortcuts import assign_perm
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
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


async def test_sdk_prunes_the_threads_it_may_delete_and_leaves_the_rest(sdk, other_sdk, user):
    mine = [(await sdk.threads.create())["thread_id"] for _ in range(2)]
    await sdk.runs.wait(mine[0], "echo", input={"messages": [{"role": "user", "content": "hi"}]})
    busy = (await sdk.threads.create())["thread_id"]
    await sdk.runs.create(busy, "echo", input={"messages": []}, after_seconds=3600)
    theirs = (await other_sdk.threads.create())["thread_id"]
    shared = (await other_sdk.threads.create())["thread_id"]
    thread = await Thread.objects.aget(pk=shared)
    await call_sync(assign_perm, "view_thread", user, thread, on=Executor.THREAD_SENSITIVE)

    named = [*mine, mine[0], busy, theirs, shared, "no-such-thread"]
    assert await sdk.threads.prune(named) == {"pruned_count": 2}

    for thread_id in mine:
        with pytest.raises(NotFoundError):
            await sdk.threads.get(thread_id)
    assert not await Run.objects.filter(thread_id=mine[0]).aexists()
    left = {t async for t in Thread.objects.values_list("thread_id", flat=True)}
    assert left == {busy, theirs, shared}


@pytest.mark.parametrize(
    "body",
    [
        {"thread_ids": ["x"], "strategy": "keep_latest"},
        {"thread_ids": ["x"], "strategy": "everything"},
        {"thread_ids": ["not a thread id"]},
        {"thread_ids": "x"},
        {"thread_ids": ["x"] * 1001},
        {},
    ],
    ids=["keep_latest", "unknown-strategy", "bad-id", "not-a-list", "too-many", "no-ids"],
)
async def test_prune_refuses_what_it_cannot_do_and_deletes_nothing(sdk, body):
    await sdk.threads.create(thread_id="x")

    with pytest.raises(UnprocessableEntityError):
        await sdk.http.post("/threads/prune", json=body)

    assert await Thread.objects.filter(pk="x").aexists()


async def test_sdk_errors_name_the_invalid_fields(sdk):
    """A 422's `detail` names fields in an object, which the SDK does not show: its error's text
    was only "422 Unprocessable Entity". `message` says them in one line."""
    with pytest.raises(UnprocessableEntityError) as refused:
        await sdk.threads.create(thread_id="not an id")
    assert str(refused.value).startswith("thread_id: Must be a UUID")

    with pytest.raises(UnprocessableEntityError) as refused:
        await sdk.runs.create(None, "agent", input={}, config={"configurable": []})
    assert "config.configurable: " in str(refused.value)


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
