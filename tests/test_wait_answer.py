"""The final answer of `/wait` and `/join`: handed over by the run's end when the run ended in
this process, read from the database otherwise, and the same either way."""

import asyncio
import json
import threading
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from django.db import connection
from django.test import AsyncRequestFactory

from deerflow_site.bridge import Executor, call_sync
from runs import admission, selectors
from runs.engine import answers, bus, fanout, queue
from runs.engine.finish import RunOutcome, ThreadSnapshot, finish_run
from runs.join_views import join
from runs.models import Run
from runs.stream_views import create_and_wait
from tests.engine_support import make_thread, pending_run
from tests.fixtures import token_for
from tests.test_direct_start import direct_worker  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

HUMAN = {"messages": [{"role": "user", "content": "hello"}]}
BODIES = {
    "values": {"assistant_id": "echo", "input": HUMAN},
    "error": {"assistant_id": "failing", "input": {"message": "boom"}},
    "interrupt": {"assistant_id": "ask_human", "input": {"question": "color?"}},
}


@pytest.fixture(autouse=True)
async def stop_listening() -> Any:
    """The test loop's listener on the channel layer stopped at the end (a cancelled Redis
    receive can swallow its cancellation, and the loop's close would wait for it)."""
    yield
    await fanout.stop_listening()


@pytest.fixture
def database_reads(monkeypatch: Any) -> list[Any]:
    """The run ids whose answer was read from the database (the selector, still called)."""
    reads: list[Any] = []
    read = selectors.final_answer

    def reading(*, run_id: Any) -> Any:
        reads.append(run_id)
        return read(run_id=run_id)

    monkeypatch.setattr(selectors, "final_answer", reading)
    return reads


async def _answer_of(view: Any, user: Any, path: str, *args: Any, body: Any = None) -> Any:
    """Call the view as daphne would, and read its whole body as JSON."""
    return await _body_of(await _response_of(view, user, path, *args, body=body))


async def _body_of(response: Any) -> Any:
    return json.loads(b"".join([chunk async for chunk in response.streaming_content]))


async def _response_of(view: Any, user: Any, path: str, *args: Any, body: Any = None) -> Any:
    """Call the view as daphne would: its response, whose body is not read yet."""
    token = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    factory, headers = AsyncRequestFactory(), {"Authorization": f"Bearer {token}"}
    if body is None:
        request = factory.get(path, headers=headers)
    else:
        content = json.dumps(body)
        request = factory.post(path, content, "application/json", headers=headers)
    response = await view(request, *args)
    assert response.status_code == 200, response.content
    return response


def _kept(run_id: Any) -> tuple[int | None, bytes | None]:
    """What this process still keeps for the run: how many requests wait for it, its answer.

    Only this run's: the table is the process's, and a test elsewhere that leaves a wait's body
    unread leaves its run in it."""
    key = str(run_id)
    return answers._waiting.get(key), answers._answers.get(key)


async def _thread_id(user: Any) -> str:
    return (await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)).pk


async def _waited_on_this_worker(
    user: Any, start_worker: Any, outcome: str
) -> tuple[str, dict[str, Any]]:
    """(thread id, answer) of a create-and-wait run of BODIES[outcome] on this process's worker
    (`start_worker`: the `direct_worker` fixture)."""
    await start_worker()
    thread_id = await _thread_id(user)
    answer = await _answer_of(
        create_and_wait,
        user,
        f"/api/threads/{thread_id}/runs/wait",
        thread_id,
        body=BODIES[outcome],
    )
    return thread_id, answer


async def test_a_waited_runs_admission_shares_the_engines_thread_on_sqlite(
    user: Any,
    direct_worker: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On SQLite a run's admission runs on the engine's thread, beside its claim and its end
    (one database thread woken per run, not two); on PostgreSQL on the API pool's."""
    threads: list[str] = []
    admit_run = admission.admit_run

    def recording(**kwargs: Any) -> Any:
        threads.append(threading.current_thread().name.rsplit("_", 1)[0])
        return admit_run(**kwargs)

    monkeypatch.setattr(admission, "admit_run", recording)

    _, answer = await _waited_on_this_worker(user, direct_worker, "values")

    assert "messages" in answer
    assert threads == ["api-db" if connection.vendor == "postgresql" else "run-engine-db"]


@pytest.mark.parametrize("outcome", sorted(BODIES))
async def test_wait_takes_the_answer_its_run_left_in_this_process(
    user: Any,
    direct_worker: Any,  # noqa: F811
    database_reads: list[Any],
    outcome: str,
) -> None:
    thread_id, answer = await _waited_on_this_worker(user, direct_worker, outcome)

    assert database_reads == []  # the run ended on this process's worker
    [run] = await call_sync(list, Run.objects.filter(thread_id=thread_id), on=Executor.API)
    assert answer == await call_sync(selectors.final_answer, run_id=run.pk, on=Executor.API)
    assert {"values": "messages", "error": "__error__", "interrupt": "__interrupt__"}[
        outcome
    ] in answer
    assert _kept(run.pk) == (None, None)


async def test_join_reads_the_answer_of_a_run_that_ended_elsewhere(
    user: Any, database_reads: list[Any]
) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    run = await call_sync(pending_run, thread=thread, user=user, on=Executor.THREAD_SENSITIVE)
    # Another process's worker claims and ends it: nothing is left in this one.
    [claimed] = (
        await call_sync(queue.claim_runs, worker_id="elsewhere", limit=1, on=Executor.API)
    ).runs
    snapshot = ThreadSnapshot(values={"reply": "from elsewhere"})
    assert await call_sync(
        finish_run,
        run=claimed,
        outcome=RunOutcome(status=Run.Status.SUCCESS),
        snapshot=snapshot,
        on=Executor.API,
    )

    answer = await _answer_of(
        join, user, f"/api/threads/{thread.pk}/runs/{run.pk}/join", thread.pk, str(run.pk)
    )

    assert answer == {"reply": "from elsewhere"}
    assert database_reads == [run.pk]
    assert _kept(run.pk) == (None, None)


def test_an_answer_nobody_waits_for_is_not_kept() -> None:
    answers.offer("a-run", status="success", error=None, values={"x": 1}, interrupts={})
    assert answers.take("a-run") is answers.MISSING

    answers.expect("a-run")
    answers.expect("a-run")  # two requests wait for it
    answers.offer("a-run", status="success", error=None, values={"x": "\x00"}, interrupts={})
    answers.forget("a-run")
    assert json.loads(answers.take("a-run")) == {"x": "\ufffd"}  # as the thread row stores it
    answers.forget("a-run")
    assert answers.take("a-run") is answers.MISSING
    assert _kept("a-run") == (None, None)


@pytest.mark.skipif(
    isinstance(bus.layer(), InMemoryChannelLayer), reason="the in-memory layer crosses no process"
)
async def test_join_takes_the_answer_the_end_of_a_run_in_another_process_brought(
    user: Any, database_reads: list[Any]
) -> None:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    run = await call_sync(pending_run, thread=thread, user=user, on=Executor.THREAD_SENSITIVE)
    path = f"/api/threads/{thread.pk}/runs/{run.pk}/join"
    # The response is made once the join listens for the run's end.
    response = await _response_of(join, user, path, thread.pk, str(run.pk))
    group = bus.run_end_group(run.pk)
    # Another process's worker claims and ends it, and its `end` brings the answer.
    [claimed] = (
        await call_sync(queue.claim_runs, worker_id="elsewhere", limit=1, on=Executor.API)
    ).runs
    snapshot = ThreadSnapshot(values={"reply": "from elsewhere"})
    outcome = RunOutcome(status=Run.Status.SUCCESS)
    assert await call_sync(
        finish_run, run=claimed, outcome=outcome, snapshot=snapshot, on=Executor.API
    )
    end = {**bus.StreamEvent.of(1, "end", None).as_message(run.pk)}
    end["answer"] = answers.layer_answer(
        status=outcome.status, error=None, values=snapshot.values, interrupts={}
    )
    message = {"type": fanout.EVENTS, "group": group, "origin": "elsewhere", "events": [end]}
    await bus.layer().group_send(group, message)

    assert await asyncio.wait_for(_body_of(response), 20) == {"reply": "from elsewhere"}
    assert database_reads == []
    assert _kept(run.pk) == (None, None)


def test_an_answer_too_large_for_the_layer_is_left_to_the_database() -> None:
    small = answers.layer_answer(status="success", error=None, values={"x": 1}, interrupts={})
    assert json.loads(small) == {"x": 1}
    large = "y" * answers.LAYER_ANSWER_MAX_BYTES
    assert answers.layer_answer(status="success", error=None, values=large, interrupts={}) is None
    failed = answers.layer_answer(
        status="error", error={"error": "E", "message": "m"}, values=None, interrupts={}
    )
    assert json.loads(failed) == {"__error__": {"error": "E", "message": "m"}}
