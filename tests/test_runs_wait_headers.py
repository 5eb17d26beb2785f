"""`POST …/runs/wait` answers its status line and headers as soon as the run is admitted.

The server here sends its first body heartbeat only after an hour, so headers that waited for the
body would never arrive while the run goes on: the Python SDK's `on_run_created` reads the run id
from them, which a client needs to cancel a long run.
"""

import asyncio
from typing import Any

import httpx
import pytest

from tests.fixtures import new_thread, sdk_client, token_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

LONG = {"steps": 600, "delay": 0.1}  # a minute unless cancelled


@pytest.fixture(scope="module")
def quiet_server(live_server_factory: Any) -> Any:
    server = live_server_factory.start(DEERFLOW_SSE_HEARTBEAT_SECONDS="3600")
    yield server
    server.stop()


@pytest.fixture
def quiet_sdk(quiet_server: Any, user: Any, closing: Any) -> Any:
    return sdk_client(closing, quiet_server.api_url, token_for(user))


@pytest.mark.parametrize("stateless", [False, True], ids=["threads/{t}/runs/wait", "runs/wait"])
async def test_on_run_created_learns_the_run_while_it_runs_and_can_cancel_it(quiet_sdk, stateless):
    thread_id = None if stateless else await new_thread(quiet_sdk)
    created: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(
        quiet_sdk.runs.wait(
            thread_id,
            "slow",
            input=LONG,
            on_run_created=created.set_result,
            on_completion="keep",
            raise_error=False,
        )
    )

    learned = await asyncio.wait_for(created, 30)
    run = await quiet_sdk.runs.get(learned["thread_id"], learned["run_id"])
    assert run["status"] in ("pending", "running")
    await quiet_sdk.runs.cancel(learned["thread_id"], learned["run_id"])
    await asyncio.wait_for(waiting, 30)
    stopped = await quiet_sdk.runs.get(learned["thread_id"], learned["run_id"])
    assert stopped["status"] == "interrupted"


async def test_wait_headers_arrive_before_the_body(quiet_server, quiet_sdk, headers):
    thread_id = await new_thread(quiet_sdk)
    async with httpx.AsyncClient(base_url=quiet_server.api_url, headers=headers) as client:
        async with client.stream(
            "POST",
            f"/threads/{thread_id}/runs/wait",
            json={"assistant_id": "slow", "input": LONG},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            location = response.headers["content-location"]
            run_id = location.rsplit("/", 1)[1]
            assert location.endswith(f"/threads/{thread_id}/runs/{run_id}")
            assert response.headers["location"] == f"/threads/{thread_id}/runs/{run_id}/join"
            await quiet_sdk.runs.cancel(thread_id, run_id)
            body = await response.aread()
    assert isinstance(httpx.Response(200, content=body).json(), dict)  # its state when stopped
