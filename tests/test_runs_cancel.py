"""Cancellation, multitask strategies and client disconnects, live through the official SDK."""

import asyncio

import httpx
import pytest
from langgraph_sdk.errors import ConflictError

from runs.models import Run
from tests.fixtures import new_thread
from tests.live import poll_until
from tests.waiting import awaited

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SLOW = {"steps": 100, "delay": 0.1}  # ten seconds unless stopped


async def ended_run(sdk, thread_id, run_id) -> dict:
    """The run once it has ended: `/join` answers at its end (awaited, not polled)."""
    await awaited(sdk.runs.join(thread_id, run_id), f"run {run_id} to end")
    return await sdk.runs.get(thread_id, run_id)


async def started_slow_run(sdk, thread_id, **options) -> dict:
    """A slow run once its first step is checkpointed: awaited on the thread's `ticks`, which
    only grow (a fixed 0.35 s sleep let a loaded machine cancel a run with no step yet)."""
    ticked = len(await ticks_of(sdk, thread_id))
    run = await sdk.runs.create(thread_id, "slow", input=SLOW, **options)

    async def stepped() -> bool:
        return len(await ticks_of(sdk, thread_id)) > ticked

    await poll_until(stepped, "the slow run to checkpoint a step")
    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "running"
    return run


async def ticks_of(sdk, thread_id) -> list[int]:
    return ((await sdk.threads.get_state(thread_id))["values"] or {}).get("ticks", [])


async def stored(run_id) -> Run:
    return await Run.objects.aget(pk=run_id)


# --- cancel ------------------------------------------------------------------------------------


async def test_cancel_interrupt_stops_a_running_run_keeping_its_checkpoints(sdk):
    # Stopped short of its end (no fixed time bound: a loaded CI machine can miss one; the
    # cancel's latency belongs in bench/).
    thread_id = await new_thread(sdk)
    run = await started_slow_run(sdk, thread_id)

    await sdk.runs.cancel(thread_id, run["run_id"], action="interrupt")
    stopped = await ended_run(sdk, thread_id, run["run_id"])

    assert stopped["status"] == "interrupted"
    state = await sdk.threads.get_state(thread_id)
    assert 1 <= state["values"]["count"] < SLOW["steps"]
    assert not (await stored(run["run_id"])).rolled_back


async def test_cancel_rollback_restores_the_state_before_the_run(sdk):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "slow", input={"steps": 1, "delay": 0})
    before = (await sdk.threads.get_state(thread_id))["values"]
    run = await started_slow_run(sdk, thread_id, multitask_strategy="reject")

    await sdk.runs.cancel(thread_id, run["run_id"], action="rollback")
    stopped = await ended_run(sdk, thread_id, run["run_id"])

    assert stopped["status"] == "interrupted"
    assert (await stored(run["run_id"])).rolled_back
    assert (await sdk.threads.get_state(thread_id))["values"] == before


async def test_cancel_with_wait_returns_once_the_run_has_stopped(sdk):
    thread_id = await new_thread(sdk)
    run = await started_slow_run(sdk, thread_id)
    await sdk.runs.cancel(thread_id, run["run_id"], wait=True)
    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "interrupted"
    assert (await sdk.threads.get(thread_id))["status"] != "busy"


async def test_cancel_answers_202_then_204_with_wait(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    first = await started_slow_run(sdk, thread_id)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        accepted = await client.post(
            f"/threads/{thread_id}/runs/{first['run_id']}/cancel", headers=headers
        )
        second = await started_slow_run(sdk, thread_id, multitask_strategy="enqueue")
        waited = await client.post(
            f"/threads/{thread_id}/runs/{second['run_id']}/cancel",
            params={"wait": 1, "action": "interrupt"},
            headers=headers,
        )
    assert (accepted.status_code, waited.status_code) == (202, 204)


@pytest.mark.parametrize(
    ("graph", "body", "status"),
    [("echo", {}, "success"), ("failing", {"message": "boom"}, "error")],
)
async def test_cancel_of_a_run_finished_on_its_own_is_409(sdk, graph, body, status):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, graph, input=body, raise_error=False)
    run = (await sdk.runs.list(thread_id))[0]
    assert run["status"] == status
    with pytest.raises(ConflictError):
        await sdk.runs.cancel(thread_id, run["run_id"])


async def test_cancel_of_a_cancelled_run_answers_again_202_and_204_with_wait(
    daphne_server, sdk, headers
):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "echo", input={}, after_seconds=60)
    await sdk.runs.cancel(thread_id, run["run_id"], wait=True)
    await sdk.runs.cancel(thread_id, run["run_id"])  # a second Stop is no client error
    cancel = f"/threads/{thread_id}/runs/{run['run_id']}/cancel"
    async with httpx.AsyncClient(
        base_url=daphne_server.api_url, headers=headers, trust_env=False
    ) as client:
        again = await client.post(cancel)
        waited = await client.post(cancel, params={"wait": 1})
        rollback = await client.post(cancel, params={"action": "rollback"})
        joined = await client.post(
            f"/threads/{thread_id}/runs/{run['run_id']}/stream", params={"action": "interrupt"}
        )
    assert [r.status_code for r in (again, waited, rollback, joined)] == [202, 204, 202, 202]
    assert (await stored(run["run_id"])).status == Run.Status.INTERRUPTED


async def test_cancel_with_an_unknown_action_is_422(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "echo", input={}, after_seconds=30)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        response = await client.post(
            f"/threads/{thread_id}/runs/{run['run_id']}/cancel",
            params={"action": "explode"},
            headers=headers,
        )
        missing = await client.post(
            f"/threads/{thread_id}/runs/00000000-0000-0000-0000-000000000000/cancel",
            headers=headers,
        )
        bad_id = await client.post(f"/threads/{thread_id}/runs/not-a-uuid/cancel", headers=headers)
    assert (response.status_code, missing.status_code, bad_id.status_code) == (422, 404, 422)
    await sdk.runs.cancel(thread_id, run["run_id"])


async def test_cancelling_a_pending_run_never_starts_it(sdk):
    # Pending behind its thread's running run, not for a delay: a delay could end before a
    # loaded machine's cancel came, and a fixed sleep past it proved nothing either.
    thread_id = await new_thread(sdk)
    first = await started_slow_run(sdk, thread_id)
    pending = await sdk.runs.create(thread_id, "echo", input={}, multitask_strategy="enqueue")
    await sdk.runs.cancel(thread_id, pending["run_id"])
    follower = await sdk.runs.create(thread_id, "echo", input={}, multitask_strategy="enqueue")
    await sdk.runs.cancel(thread_id, first["run_id"])

    # A thread's runs start oldest first: once its follower has run, the queue has passed it.
    done = await ended_run(sdk, thread_id, follower["run_id"])
    assert done["status"] == "success"
    assert (await sdk.runs.get(thread_id, pending["run_id"]))["status"] == "interrupted"
    assert (await stored(pending["run_id"])).started_at is None
    history = await sdk.threads.get_history(thread_id, limit=1000)
    run_ids = {state["metadata"].get("run_id") for state in history}
    assert {first["run_id"], follower["run_id"]} <= run_ids
    assert pending["run_id"] not in run_ids
    assert (await sdk.threads.get(thread_id))["status"] == "idle"


async def test_a_stream_of_a_pending_run_ends_when_it_is_cancelled(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "echo", input={}, after_seconds=30)

    stream = sdk.runs.join_stream(thread_id, run["run_id"])
    parts = [await anext(stream)]  # `metadata`: the stream listens (it subscribes first)
    await sdk.runs.cancel(thread_id, run["run_id"])
    parts += [part async for part in stream]
    assert [part.event for part in parts] == ["metadata", "end"]


async def test_stream_endpoint_with_action_cancels_the_run(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    run = await started_slow_run(sdk, thread_id)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        response = await client.post(
            f"/threads/{thread_id}/runs/{run['run_id']}/stream",
            params={"action": "interrupt", "wait": 1},
            headers=headers,
        )
    assert response.status_code == 204
    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "interrupted"


async def test_bulk_cancel_of_a_threads_runs(sdk):
    thread_id = await new_thread(sdk)
    first = await started_slow_run(sdk, thread_id)
    second = await sdk.runs.create(thread_id, "echo", input={}, multitask_strategy="enqueue")

    await sdk.runs.cancel_many(thread_id=thread_id, run_ids=[first["run_id"], second["run_id"]])

    for run in (first, second):
        assert (await ended_run(sdk, thread_id, run["run_id"]))["status"] == "interrupted"


async def test_bulk_cancel_by_status_cancels_only_the_callers_runs(sdk, other_sdk):
    mine = await sdk.runs.create(await new_thread(sdk), "echo", input={}, after_seconds=30)
    theirs = await other_sdk.runs.create(
        await new_thread(other_sdk), "echo", input={}, after_seconds=30
    )

    await sdk.runs.cancel_many(status="pending")

    assert (await stored(mine["run_id"])).status == "interrupted"
    assert (await stored(theirs["run_id"])).status == "pending"
    await other_sdk.runs.cancel(theirs["thread_id"], theirs["run_id"])


# --- multitask strategies ---------------------------------------------------------------------


async def test_reject_strategy_returns_409_while_thread_busy(sdk):
    thread_id = await new_thread(sdk)
    run = await started_slow_run(sdk, thread_id)
    with pytest.raises(ConflictError):
        await sdk.runs.create(thread_id, "echo", input={}, multitask_strategy="reject")
    await sdk.runs.cancel(thread_id, run["run_id"], wait=True)


async def test_interrupt_strategy_stops_the_running_run_and_runs_the_new_one(sdk):
    thread_id = await new_thread(sdk)
    first = await started_slow_run(sdk, thread_id)
    values = await sdk.runs.wait(
        thread_id, "slow", input={"steps": 1, "delay": 0}, multitask_strategy="interrupt"
    )
    assert (await sdk.runs.get(thread_id, first["run_id"]))["status"] == "interrupted"
    assert values["count"] >= 1
    assert not (await stored(first["run_id"])).rolled_back


async def test_rollback_strategy_discards_the_running_runs_work(sdk):
    thread_id = await new_thread(sdk)
    first = await started_slow_run(sdk, thread_id)
    values = await sdk.runs.wait(
        thread_id, "slow", input={"steps": 1, "delay": 0}, multitask_strategy="rollback"
    )
    assert (await sdk.runs.get(thread_id, first["run_id"]))["status"] == "interrupted"
    assert (await stored(first["run_id"])).rolled_back
    assert values["ticks"] == [1]  # nothing of the rolled back run's ticks survived


async def test_enqueue_strategy_runs_the_new_run_after_the_first(sdk):
    thread_id = await new_thread(sdk)
    first = await sdk.runs.create(thread_id, "slow", input={"steps": 3, "delay": 0.1})
    second = await sdk.runs.create(
        thread_id, "slow", input={"steps": 1, "delay": 0}, multitask_strategy="enqueue"
    )
    await sdk.runs.join(thread_id, second["run_id"])

    one, two = await stored(first["run_id"]), await stored(second["run_id"])
    assert (one.status, two.status) == ("success", "success")
    assert two.started_at >= one.ended_at


# --- client disconnects -----------------------------------------------------------------------


async def stream_until_first_custom_event(sdk, thread_id, **options) -> str:
    run_id = None
    async for part in sdk.runs.stream(
        thread_id, "slow", input=SLOW, stream_mode="custom", **options
    ):
        if part.event == "metadata":
            run_id = part.data["run_id"]
        if part.event == "custom":
            break
    return run_id


async def test_on_disconnect_cancel_interrupts_the_run_when_the_client_leaves(sdk):
    thread_id = await new_thread(sdk)
    run_id = await stream_until_first_custom_event(sdk, thread_id, on_disconnect="cancel")
    run = await ended_run(sdk, thread_id, run_id)
    assert run["status"] == "interrupted"


async def test_on_disconnect_continue_lets_the_run_finish(sdk):
    thread_id = await new_thread(sdk)
    run_id = await stream_until_first_custom_event(sdk, thread_id, on_disconnect="continue")
    await asyncio.sleep(0.5)
    assert (await sdk.runs.get(thread_id, run_id))["status"] == "running"
    await sdk.runs.cancel(thread_id, run_id, wait=True)


async def test_join_with_cancel_on_disconnect_interrupts_the_run(sdk):
    thread_id = await new_thread(sdk)
    run = await started_slow_run(sdk, thread_id, stream_mode="custom")
    async for part in sdk.runs.join_stream(thread_id, run["run_id"], cancel_on_disconnect=True):
        if part.event == "custom":
            break
    stopped = await ended_run(sdk, thread_id, run["run_id"])
    assert stopped["status"] == "interrupted"


async def test_wait_with_on_disconnect_cancel_interrupts_the_run_when_the_client_leaves(
    daphne_server, sdk, headers
):
    thread_id = await new_thread(sdk)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"/threads/{thread_id}/runs/wait",
                json={"assistant_id": "slow", "input": SLOW, "on_disconnect": "cancel"},
                headers=headers,
                timeout=httpx.Timeout(5, read=1.0),
            )
    run = (await sdk.runs.list(thread_id))[0]
    stopped = await ended_run(sdk, thread_id, run["run_id"])
    assert stopped["status"] == "interrupted"


async def test_json_join_with_cancel_on_disconnect_interrupts_the_run_when_the_client_leaves(
    daphne_server, sdk, headers
):
    """The JS SDK's `runs.join(t, r, {cancelOnDisconnect: true})` sends `?cancel_on_disconnect=1`
    to the JSON join: a caller leaving before the end interrupts the run, as a join stream's."""
    thread_id = await new_thread(sdk)
    run = await started_slow_run(sdk, thread_id)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(
                f"/threads/{thread_id}/runs/{run['run_id']}/join",
                params={"cancel_on_disconnect": "1"},
                headers=headers,
                timeout=httpx.Timeout(5, read=1.0),
            )
    stopped = await ended_run(sdk, thread_id, run["run_id"])
    assert stopped["status"] == "interrupted"


async def test_json_join_with_a_bad_cancel_on_disconnect_is_422_and_leaves_the_run(
    daphne_server, sdk, headers
):
    thread_id = await new_thread(sdk)
    run = await started_slow_run(sdk, thread_id)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        answer = await client.get(
            f"/threads/{thread_id}/runs/{run['run_id']}/join",
            params={"cancel_on_disconnect": "maybe"},
            headers=headers,
        )
    assert answer.status_code == 422
    assert "cancel_on_disconnect" in answer.json()["detail"]
    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "running"
    await sdk.runs.cancel(thread_id, run["run_id"], wait=True)
