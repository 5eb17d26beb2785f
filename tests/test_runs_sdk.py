"""The official langgraph_sdk drives runs on a live daphne server; its embedded worker runs them."""

import uuid

import httpx
import pytest
from langgraph_sdk.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)

from runs.models import Run
from tests.fixtures import new_thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HUMAN = {"messages": [{"role": "user", "content": "hello"}]}


# --- create / join / wait ---------------------------------------------------------------------


async def test_create_then_join_returns_the_final_values(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "echo", input=HUMAN)
    assert run["status"] in ("pending", "running", "success")

    values = await sdk.runs.join(thread_id, run["run_id"])

    assert [m["content"] for m in values["messages"]] == ["hello", "echo: hello"]
    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "success"
    assert (await sdk.threads.get(thread_id))["status"] == "idle"


async def test_wait_returns_the_final_values(sdk):
    thread_id = await new_thread(sdk)
    values = await sdk.runs.wait(thread_id, "echo", input=HUMAN)
    assert values["messages"][-1]["content"] == "echo: hello"


async def test_wait_of_a_failing_graph_returns_its_error(sdk):
    thread_id = await new_thread(sdk)
    values = await sdk.runs.wait(thread_id, "failing", input={"message": "boom"}, raise_error=False)
    assert values["__error__"]["error"] == "GraphFailure"
    assert isinstance(values["__error__"]["message"], str)
    assert (await sdk.threads.get(thread_id))["status"] == "error"


async def test_run_stopping_at_interrupt_ends_success_with_its_thread_interrupted(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "ask_human", input={"question": "color?"})
    await sdk.runs.join(thread_id, run["run_id"])

    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "success"
    thread = await sdk.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    [interrupts] = thread["interrupts"].values()
    assert interrupts[0]["value"] == {"question": "color?"}


async def test_run_stopping_at_a_breakpoint_ends_success_with_its_thread_interrupted(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "echo", input=HUMAN, interrupt_before=["echo"])
    await sdk.runs.join(thread_id, run["run_id"])

    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "success"
    assert (await sdk.threads.get(thread_id))["status"] == "interrupted"
    assert (await sdk.threads.get_state(thread_id))["next"] == ["echo"]


async def test_wait_of_an_interrupted_graph_returns_the_interrupt(sdk):
    thread_id = await new_thread(sdk)
    values = await sdk.runs.wait(thread_id, "ask_human", input={"question": "color?"})
    assert values["__interrupt__"][0]["value"] == {"question": "color?"}
    assert (await sdk.threads.get(thread_id))["status"] == "interrupted"

    resumed = await sdk.runs.wait(thread_id, "ask_human", command={"resume": "blue"})

    assert resumed["answer"] == "blue"
    assert "__interrupt__" not in resumed
    assert (await sdk.threads.get(thread_id))["status"] == "idle"


async def test_wait_with_if_not_exists_create_makes_the_thread(sdk):
    values = await sdk.runs.wait("made-by-wait", "echo", input=HUMAN, if_not_exists="create")
    assert values["messages"][-1]["content"] == "echo: hello"
    assert (await sdk.threads.get("made-by-wait"))["metadata"]["graph_id"] == "echo"


async def test_join_of_a_finished_run_answers_at_once(sdk):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "echo", input=HUMAN)
    run = (await sdk.runs.list(thread_id))[0]
    values = await sdk.runs.join(thread_id, run["run_id"])
    assert values["messages"][-1]["content"] == "echo: hello"


# --- list / get / delete ----------------------------------------------------------------------


async def test_list_get_and_delete_runs(sdk):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "echo", input=HUMAN)
    await sdk.runs.wait(thread_id, "failing", input={}, raise_error=False)

    runs = await sdk.runs.list(thread_id)
    assert [r["status"] for r in runs] == ["error", "success"]  # newest first
    assert [r["run_id"] for r in await sdk.runs.list(thread_id, status="success")] == [
        runs[1]["run_id"]
    ]
    assert len(await sdk.runs.list(thread_id, limit=1, offset=1)) == 1
    assert (await sdk.runs.get(thread_id, runs[0]["run_id"]))["run_id"] == runs[0]["run_id"]

    await sdk.runs.delete(thread_id, runs[0]["run_id"])

    with pytest.raises(NotFoundError):
        await sdk.runs.get(thread_id, runs[0]["run_id"])
    assert len(await sdk.runs.list(thread_id)) == 1


async def test_runs_of_another_users_thread_are_404(sdk, other_sdk):
    thread_id = await new_thread(other_sdk)
    run = await other_sdk.runs.create(thread_id, "echo", input=HUMAN)
    with pytest.raises(NotFoundError):
        await sdk.runs.list(thread_id)
    with pytest.raises(NotFoundError):
        await sdk.runs.get(thread_id, run["run_id"])
    with pytest.raises(NotFoundError):
        await sdk.runs.create(thread_id, "echo", input=HUMAN)
    with pytest.raises(NotFoundError):
        await sdk.runs.cancel(thread_id, run["run_id"])
    with pytest.raises(httpx.HTTPStatusError) as raised:  # join raises httpx's own error
        await sdk.runs.join(thread_id, run["run_id"])
    assert raised.value.response.status_code == 404


async def test_unknown_stream_mode_is_422(sdk):
    thread_id = await new_thread(sdk)
    with pytest.raises(UnprocessableEntityError):
        await sdk.runs.create(thread_id, "echo", input=HUMAN, stream_mode="bogus")
    with pytest.raises(UnprocessableEntityError):
        await sdk.runs.create(thread_id, "echo", input=HUMAN, multitask_strategy="bogus")


async def test_unknown_graph_name_is_422(sdk):
    thread_id = await new_thread(sdk)
    with pytest.raises(UnprocessableEntityError) as refused:
        await sdk.runs.create(thread_id, "no-such-graph", input=HUMAN)
    assert "assistant_id" in refused.value.response.json()["detail"]


async def test_unknown_assistant_id_is_404(sdk):
    thread_id = await new_thread(sdk)
    with pytest.raises(NotFoundError):
        await sdk.runs.create(thread_id, str(uuid.uuid4()), input=HUMAN)


async def test_delete_of_an_active_run_is_409(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "slow", input={"steps": 50, "delay": 0.1})
    with pytest.raises(ConflictError):
        await sdk.runs.delete(thread_id, run["run_id"])
    await sdk.runs.cancel(thread_id, run["run_id"], wait=True)


# --- stateless runs ---------------------------------------------------------------------------


async def test_stateless_wait_runs_on_a_temporary_thread(sdk):
    values = await sdk.runs.wait(None, "echo", input=HUMAN)
    assert values["messages"][-1]["content"] == "echo: hello"


async def test_stateless_stream_and_create(sdk):
    parts = [part async for part in sdk.runs.stream(None, "echo", input=HUMAN)]
    assert [parts[0].event, parts[-1].event] == ["metadata", "end"]
    run = await sdk.runs.create(None, "echo", input=HUMAN, on_completion="keep")
    values = await sdk.runs.join(run["thread_id"], run["run_id"])
    assert values["messages"][-1]["content"] == "echo: hello"


async def test_stateless_batch_creates_every_run_or_none(sdk):
    runs = await sdk.runs.create_batch(
        [{"assistant_id": "echo", "input": HUMAN}, {"assistant_id": "echo", "input": HUMAN}]
    )
    assert len({run["thread_id"] for run in runs}) == 2
    with pytest.raises(UnprocessableEntityError):
        await sdk.runs.create_batch(
            [{"assistant_id": "echo"}, {"assistant_id": "echo", "stream_mode": "bogus"}]
        )
    assert await Run.objects.acount() == 2


# --- checkpoints --------------------------------------------------------------------------------


async def test_a_run_can_fork_from_a_checkpoint_of_its_thread(sdk):
    thread_id = await new_thread(sdk)
    parts = [
        part
        async for part in sdk.runs.stream(
            thread_id, "slow", input={"steps": 3, "delay": 0}, stream_mode="checkpoints"
        )
    ]
    checkpoints = [part.data for part in parts if part.event == "checkpoints"]
    after_first_tick = next(c for c in checkpoints if c["values"].get("count") == 1)
    checkpoint_id = after_first_tick["config"]["configurable"]["checkpoint_id"]

    values = await sdk.runs.wait(thread_id, "slow", input=None, checkpoint_id=checkpoint_id)

    assert values["count"] == 3
    assert values["ticks"] == [1, 2, 3]  # the fork replaced ticks 2 and 3, not appended to them


async def test_a_checkpoint_id_of_another_thread_is_400_and_starts_nothing(sdk):
    source = await new_thread(sdk)
    await sdk.runs.wait(source, "echo", input=HUMAN)
    checkpoint_id = (await sdk.threads.get_state(source))["checkpoint"]["checkpoint_id"]
    other = await new_thread(sdk)
    with pytest.raises(BadRequestError):
        await sdk.runs.create(other, "echo", input=HUMAN, checkpoint_id=checkpoint_id)
    assert await sdk.runs.list(other) == []


async def test_an_unknown_checkpoint_id_is_404(sdk):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "echo", input=HUMAN)
    with pytest.raises(NotFoundError):
        await sdk.runs.create(
            thread_id, "echo", input=HUMAN, checkpoint_id="1f000000-0000-6000-8000-000000000000"
        )


# --- durability -------------------------------------------------------------------------------


async def _checkpoints_after_echo(sdk, **body) -> int:
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "echo", input=HUMAN, **body)
    assert (await sdk.threads.get_state(thread_id))["values"]["messages"][-1]["content"] == (
        "echo: hello"
    )
    return len(await sdk.threads.get_history(thread_id, limit=100))


async def test_durability_goes_through_to_langgraph(sdk):
    every_step = await _checkpoints_after_echo(sdk)
    assert await _checkpoints_after_echo(sdk, durability="sync") == every_step
    assert await _checkpoints_after_echo(sdk, durability="async") == every_step
    assert every_step > 1
    assert await _checkpoints_after_echo(sdk, durability="exit") == 1


async def test_checkpoint_during_false_saves_only_at_exit(sdk):
    with pytest.warns(DeprecationWarning):  # the SDK's: durability replaces it
        assert await _checkpoints_after_echo(sdk, checkpoint_during=False) == 1


async def test_strict_resume_refuses_an_answer_to_no_waiting_interrupt(sdk):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "ask_human", input={"question": "color?"})
    unknown = {"0" * 32: "blue"}  # a resume map naming an interrupt id that is not waiting

    result = await sdk.runs.wait(
        thread_id, "ask_human", command={"resume": unknown}, strict_resume=True, raise_error=False
    )

    assert result["__error__"]["error"] == "UnknownInterruptError"
    [run] = await sdk.runs.list(thread_id, limit=1)
    assert run["status"] == "error"


# --- resume without a thread ------------------------------------------------------------------


async def _stateless_wait(sdk, **body):
    await sdk.runs.wait(None, "ask_human", **body)


async def _stateless_stream(sdk, **body):
    async for _ in sdk.runs.stream(None, "ask_human", **body):
        pass


async def _stateless_create(sdk, **body):
    await sdk.runs.create(None, "ask_human", **body)


async def _stateless_batch(sdk, **body):
    await sdk.runs.create_batch([{"assistant_id": "ask_human", **body}])


@pytest.mark.parametrize(
    "create", [_stateless_wait, _stateless_stream, _stateless_create, _stateless_batch]
)
async def test_resume_without_a_thread_is_400(sdk, create):
    # runs.wait raises httpx's own error, the other methods the SDK's subclass of it.
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await create(sdk, command={"resume": "blue"})

    assert refused.value.response.status_code == 400
    assert "resume" in refused.value.response.json()["detail"]
    assert not await Run.objects.aexists()
