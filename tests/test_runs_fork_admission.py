"""Forking from a checkpoint through every create endpoint: one admission path answers alike.

SPEC: `checkpoint_id` forks from that checkpoint (404 unknown, 400 of another thread). The thread
is authorised before the checkpoint is looked up, so no answer tells whether another user's
thread holds a checkpoint id.
"""

from typing import Any

import httpx
import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from tests.fixtures import new_thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HUMAN = {"messages": [{"role": "user", "content": "hello"}]}
UNKNOWN_CHECKPOINT = "1f000000-0000-6000-8000-000000000000"
#: The seven create endpoints: (path, whether it names a thread, whether its body is a list).
CREATE_ENDPOINTS = [
    ("/threads/{thread_id}/runs", True, False),
    ("/threads/{thread_id}/runs/stream", True, False),
    ("/threads/{thread_id}/runs/wait", True, False),
    ("/runs", False, False),
    ("/runs/stream", False, False),
    ("/runs/wait", False, False),
    ("/runs/batch", False, True),
]
ENDPOINT_IDS = [path for path, _, _ in CREATE_ENDPOINTS]


async def checkpoint_of_new_thread(sdk: Any) -> tuple[str, str]:
    """A thread that ran once, and its latest checkpoint id."""
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "echo", input=HUMAN)
    state = await sdk.threads.get_state(thread_id)
    return thread_id, state["checkpoint"]["checkpoint_id"]


async def create(
    server: Any, headers: dict[str, str], endpoint: tuple[str, bool, bool], thread_id: str, **body
) -> httpx.Response:
    path, _, is_batch = endpoint
    body = {"assistant_id": "echo", "input": HUMAN, **body}
    async with httpx.AsyncClient(base_url=server.api_url, headers=headers, trust_env=False) as c:
        return await c.post(path.format(thread_id=thread_id), json=[body] if is_batch else body)


def run_count() -> int:
    return Run.objects.count()


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_a_checkpoint_of_another_thread_is_400_and_admits_nothing(
    endpoint, sdk, headers, daphne_server
):
    _, checkpoint_id = await checkpoint_of_new_thread(sdk)
    target = await new_thread(sdk)
    runs_before = await call_sync(run_count, on=Executor.THREAD_SENSITIVE)

    response = await create(daphne_server, headers, endpoint, target, checkpoint_id=checkpoint_id)

    assert response.status_code == 400, response.text
    assert "another thread" in response.json()["detail"]
    assert await call_sync(run_count, on=Executor.THREAD_SENSITIVE) == runs_before


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_a_checkpoint_named_with_another_thread_id_is_400(
    endpoint, sdk, headers, daphne_server
):
    source, checkpoint_id = await checkpoint_of_new_thread(sdk)
    target = await new_thread(sdk)

    response = await create(
        daphne_server,
        headers,
        endpoint,
        target,
        checkpoint={"thread_id": source, "checkpoint_id": checkpoint_id},
    )

    assert response.status_code == 400, response.text


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_an_unknown_checkpoint_is_404(endpoint, sdk, headers, daphne_server):
    target, _ = await checkpoint_of_new_thread(sdk)
    runs_before = await call_sync(run_count, on=Executor.THREAD_SENSITIVE)

    response = await create(
        daphne_server, headers, endpoint, target, checkpoint_id=UNKNOWN_CHECKPOINT
    )

    assert response.status_code == 404, response.text
    assert await call_sync(run_count, on=Executor.THREAD_SENSITIVE) == runs_before


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_a_checkpoint_of_another_users_thread_is_404_like_an_unknown_one(
    endpoint, sdk, other_sdk, headers, daphne_server
):
    _, theirs = await checkpoint_of_new_thread(other_sdk)
    target = await new_thread(sdk)

    response = await create(daphne_server, headers, endpoint, target, checkpoint_id=theirs)

    assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    "endpoint", [e for e in CREATE_ENDPOINTS if e[1]], ids=[p for p, t, _ in CREATE_ENDPOINTS if t]
)
async def test_another_users_thread_is_404_before_its_checkpoint_is_looked_up(
    endpoint, other_sdk, headers, daphne_server
):
    theirs, their_checkpoint = await checkpoint_of_new_thread(other_sdk)

    with_theirs = await create(
        daphne_server, headers, endpoint, theirs, checkpoint_id=their_checkpoint
    )
    with_unknown = await create(
        daphne_server, headers, endpoint, theirs, checkpoint_id=UNKNOWN_CHECKPOINT
    )

    assert with_theirs.status_code == with_unknown.status_code == 404
    assert with_theirs.json() == with_unknown.json()


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_a_checkpoint_in_config_configurable_is_admitted_as_checkpoint_id(
    endpoint, sdk, headers, daphne_server
):
    """LangGraph read `config.configurable.checkpoint_id` unchecked: an id naming no checkpoint
    of the thread (or not a UUID) started it over from an empty state, its history gone from
    its latest state. It is the run's checkpoint now, with checkpoint_id's answers."""
    target, _ = await checkpoint_of_new_thread(sdk)
    _, theirs = await checkpoint_of_new_thread(sdk)
    before = await sdk.threads.get_state(target)
    runs_before = await call_sync(run_count, on=Executor.THREAD_SENSITIVE)

    def config(checkpoint_id: str) -> dict[str, Any]:
        return {"configurable": {"checkpoint_id": checkpoint_id}}

    unknown = await create(
        daphne_server, headers, endpoint, target, config=config(UNKNOWN_CHECKPOINT)
    )
    junk = await create(daphne_server, headers, endpoint, target, config=config("junk"))
    of_other = await create(daphne_server, headers, endpoint, target, config=config(theirs))

    assert (unknown.status_code, junk.status_code, of_other.status_code) == (404, 422, 400)
    assert "configurable: `checkpoint_id`" in junk.text
    assert await call_sync(run_count, on=Executor.THREAD_SENSITIVE) == runs_before
    assert await sdk.threads.get_state(target) == before
