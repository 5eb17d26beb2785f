"""The run journal, live through raw HTTP: what a run writes, the three pages' window rules,
token usage, and who may read them."""

from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run, RunEvent, RunModelUsage
from tests.fixtures import new_thread
from tests.journal_support import (
    AGENT_QUESTION,
    agent_run,
    get_json,
    journal_until,
    types_of,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

CONVERSATION = (
    "run.start",
    "llm.human.input",
    "llm.ai.response",
    "llm.tool.result",
    "llm.ai.response",
    "run.end",
)


# --- What a run writes --------------------------------------------------------------------------


async def test_agent_run_journals_its_conversation_in_order(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    run = await agent_run(sdk, thread_id)

    events = await get_json(live_api, f"/threads/{thread_id}/runs/{run['run_id']}/events")

    assert tuple(types_of(events, "message", "lifecycle")) == CONVERSATION
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    human, first_ai, tool, final_ai = [e for e in events if e["category"] == "message"]
    assert human["content"]["type"] == "human"
    assert human["content"]["content"] == "What is 6 * 7?"
    assert first_ai["content"]["tool_calls"][0]["name"] == "calculator"
    assert tool["content"]["type"] == "tool" and tool["content"]["content"] == "42"
    assert final_ai["content"]["content"] == "The result is 42."
    assert final_ai["metadata"]["model_name"] == "scripted"
    assert final_ai["metadata"]["latency_ms"] >= 0
    assert types_of(events, "trace") == ["llm.call", "llm.call"]
    assert {e["run_id"] for e in events} == {run["run_id"]}
    assert all(e["thread_id"] == thread_id for e in events)


async def test_run_token_totals_are_the_sum_over_its_ai_messages(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    run = await agent_run(sdk, thread_id)
    events = await get_json(live_api, f"/threads/{thread_id}/runs/{run['run_id']}/events")
    answers = [e["metadata"]["usage"] for e in events if e["event_type"] == "llm.ai.response"]
    expected = {
        key: sum(usage[key] for usage in answers)
        for key in ("input_tokens", "output_tokens", "total_tokens")
    }

    run = await sdk.runs.get(thread_id, run["run_id"])
    usage = await get_json(live_api, f"/threads/{thread_id}/token-usage")

    assert expected["total_tokens"] > 0
    assert {key: run[key] for key in expected} == expected
    assert run["llm_calls"] == 2
    assert run["token_usage_by_model"] == {"scripted": {**expected, "llm_calls": 2}}
    listed = (await sdk.runs.list(thread_id))[0]
    assert listed["token_usage_by_model"] == run["token_usage_by_model"]
    assert usage == {
        "thread_id": thread_id,
        "total_input_tokens": expected["input_tokens"],
        "total_output_tokens": expected["output_tokens"],
        "total_tokens": expected["total_tokens"],
        "total_runs": 1,
        "by_model": {"scripted": {**expected, "runs": 1}},
    }


async def test_token_usage_adds_up_runs_and_counts_running_ones_only_with_include_active(
    sdk: Any, live_api: Any, user: Any
) -> None:
    thread_id = await new_thread(sdk)
    first = await agent_run(sdk, thread_id)
    second = await agent_run(sdk, thread_id, "count these four words")
    running = await call_sync(
        _running_run_with_usage, thread_id, user, on=Executor.THREAD_SENSITIVE
    )

    finished = await get_json(live_api, f"/threads/{thread_id}/token-usage")
    with_active = await get_json(
        live_api, f"/threads/{thread_id}/token-usage", include_active="true"
    )

    runs = [await sdk.runs.get(thread_id, r["run_id"]) for r in (first, second)]
    assert finished["total_runs"] == 2
    assert finished["total_tokens"] == sum(r["total_tokens"] for r in runs)
    assert set(finished["by_model"]) == {"scripted"}
    assert finished["by_model"]["scripted"]["runs"] == 2
    assert with_active["total_runs"] == 3
    assert with_active["total_tokens"] == finished["total_tokens"] + running.total_tokens
    assert with_active["by_model"]["other-model"] == {
        "input_tokens": 7,
        "output_tokens": 3,
        "total_tokens": 10,
        "runs": 1,
    }
    await call_sync(
        Run.objects.filter(pk=running.pk).update,
        status=Run.Status.ERROR,
        on=Executor.THREAD_SENSITIVE,
    )


def _running_run_with_usage(thread_id: str, user: Any) -> Run:
    """A run still running on the thread, with usage its worker has written so far."""
    from django.utils import timezone

    done = Run.objects.filter(thread_id=thread_id).first()
    run = Run.objects.create(
        thread_id=thread_id,
        user=user,
        assistant_id=done.assistant_id,
        graph_id="agent",
        status=Run.Status.RUNNING,
        run_at=timezone.now(),
        input_tokens=7,
        output_tokens=3,
        total_tokens=10,
        llm_calls=1,
    )
    RunModelUsage.objects.create(
        run=run, model_name="other-model", input_tokens=7, output_tokens=3, total_tokens=10
    )
    return run


async def test_failed_run_keeps_its_journal_and_ends_with_run_error(
    sdk: Any, live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(
        thread_id, "failing", input={"message": "boom", **AGENT_QUESTION}, raise_error=False
    )
    run = (await sdk.runs.list(thread_id, limit=1))[0]

    events = await get_json(live_api, f"/threads/{thread_id}/runs/{run['run_id']}/events")

    assert types_of(events) == ["run.start", "llm.human.input", "run.error"]
    assert events[-1]["content"] == {"error": "GraphFailure", "message": "boom"}
    assert events[-1]["metadata"]["status"] == "error"


@pytest.mark.parametrize("action", ["interrupt", "rollback"])
async def test_cancelled_run_keeps_its_journal_and_ends_with_run_cancel(
    sdk: Any, live_api: Any, action: str
) -> None:
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(
        thread_id, "slow", input={"steps": 200, "delay": 0.1, **AGENT_QUESTION}
    )
    # Wait until the human message is written (the run has been executing for a while).
    await journal_until(
        live_api, thread_id, run["run_id"], lambda ev: "llm.human.input" in types_of(ev)
    )

    await sdk.runs.cancel(thread_id, run["run_id"], action=action, wait=True)
    events = await get_json(live_api, f"/threads/{thread_id}/runs/{run['run_id']}/events")

    assert types_of(events) == ["run.start", "llm.human.input", "run.cancel"]
    assert events[-1]["metadata"] == {
        "status": "interrupted",
        "action": action,
        "rolled_back": action == "rollback",
    }


async def test_pending_run_cancelled_before_it_started_journals_run_cancel(
    sdk: Any, live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    await sdk.runs.create(thread_id, "slow", input={"steps": 200, "delay": 0.1})
    queued = await sdk.runs.create(thread_id, "echo", input={}, multitask_strategy="enqueue")

    await sdk.runs.cancel(thread_id, queued["run_id"], action="interrupt")
    events = await get_json(live_api, f"/threads/{thread_id}/runs/{queued['run_id']}/events")

    assert types_of(events) == ["run.cancel"]
    assert events[0]["metadata"]["started"] is False
    for active in await sdk.runs.list(thread_id, status="running"):
        await sdk.runs.cancel(thread_id, active["run_id"], wait=True)


# --- The pages' windows ---------------------------------------------------------------------


async def test_thread_messages_window_rules(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    for question in ("What is 1 + 1?", "What is 2 + 2?", "What is 3 + 3?"):
        await agent_run(sdk, thread_id, question)
    path = f"/threads/{thread_id}/messages"

    everything = await get_json(live_api, path)
    seqs = [m["seq"] for m in everything]
    last_two = await get_json(live_api, path, limit=2)
    before = await get_json(live_api, path, limit=3, before_seq=seqs[5])
    after = await get_json(live_api, path, limit=3, after_seq=seqs[2])
    after_end = await get_json(live_api, path, after_seq=seqs[-1])

    assert len(everything) == 12  # four messages per run, three runs
    assert {m["category"] for m in everything} == {"message"}
    assert seqs == sorted(seqs)
    assert [m["seq"] for m in last_two] == seqs[-2:]
    assert [m["seq"] for m in before] == seqs[2:5]
    assert [m["seq"] for m in after] == seqs[3:6]
    assert after_end == []


async def test_run_messages_page_says_whether_more_lie_beyond(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    await agent_run(sdk, thread_id)
    run = await agent_run(sdk, thread_id, "What is 5 - 1?")
    path = f"/threads/{thread_id}/runs/{run['run_id']}/messages"

    whole = await get_json(live_api, path)
    seqs = [m["seq"] for m in whole["data"]]
    last = await get_json(live_api, path, limit=3)
    first = await get_json(live_api, path, limit=3, after_seq=0)
    rest = await get_json(live_api, path, limit=3, after_seq=seqs[2])
    before = await get_json(live_api, path, limit=4, before_seq=seqs[2])

    assert whole["has_more"] is False and len(seqs) == 4
    assert {m["run_id"] for m in whole["data"]} == {run["run_id"]}
    assert ([m["seq"] for m in last["data"]], last["has_more"]) == (seqs[1:], True)
    assert ([m["seq"] for m in first["data"]], first["has_more"]) == (seqs[:3], True)
    assert ([m["seq"] for m in rest["data"]], rest["has_more"]) == (seqs[3:], False)
    assert ([m["seq"] for m in before["data"]], before["has_more"]) == (seqs[:2], False)


async def test_run_events_filter_by_type_with_legacy_aliases_and_page_forward(
    sdk: Any, live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    run = await agent_run(sdk, thread_id)
    path = f"/threads/{thread_id}/runs/{run['run_id']}/events"

    everything = await get_json(live_api, path)
    answers = await get_json(live_api, path, event_types="ai_message")
    mixed = await get_json(live_api, path, event_types="human_message,llm.tool.result,run.end")
    page = await get_json(live_api, path, after_seq=everything[1]["seq"], limit=2)
    last = await get_json(live_api, path, limit=2)

    assert types_of(answers) == ["llm.ai.response", "llm.ai.response"]
    assert types_of(mixed) == ["llm.human.input", "llm.tool.result", "run.end"]
    assert page == everything[2:4]
    assert last == everything[-2:]


@pytest.mark.parametrize(
    ("page", "params", "field"),
    [
        ("messages", {"limit": 0}, "limit"),
        ("messages", {"limit": 201}, "limit"),
        ("messages", {"before_seq": "x"}, "before_seq"),
        ("messages", {"after_seq": "1.5"}, "after_seq"),
        ("run_messages", {"limit": 201}, "limit"),
        ("run_messages", {"after_seq": "abc"}, "after_seq"),
        ("events", {"limit": 2001}, "limit"),
        ("events", {"limit": 0}, "limit"),
        ("events", {"after_seq": "-"}, "after_seq"),
        ("events", {"event_types": "ai_message,nope"}, "event_types"),
        ("token_usage", {"include_active": "maybe"}, "include_active"),
    ],
)
async def test_bad_query_values_are_422_naming_the_field(
    sdk: Any, live_api: Any, page: str, params: dict, field: str
) -> None:
    thread_id = await new_thread(sdk)
    run = await agent_run(sdk, thread_id)
    path = {
        "messages": f"/threads/{thread_id}/messages",
        "run_messages": f"/threads/{thread_id}/runs/{run['run_id']}/messages",
        "events": f"/threads/{thread_id}/runs/{run['run_id']}/events",
        "token_usage": f"/threads/{thread_id}/token-usage",
    }[page]

    response = await live_api.get(path, params=params)

    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]


# --- Who may read -----------------------------------------------------------------------------


async def test_another_users_thread_is_404_on_every_journal_endpoint(
    sdk: Any, live_api: Any, other_live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    run = await agent_run(sdk, thread_id)
    one_run = f"/threads/{thread_id}/runs/{run['run_id']}"
    paths = [
        f"/threads/{thread_id}/messages",
        f"/threads/{thread_id}/token-usage",
        f"{one_run}/messages",
        f"{one_run}/events",
    ]

    for path in paths:
        assert (await live_api.get(path)).status_code == 200, path
        response = await other_live_api.get(path)
        assert response.status_code == 404, (path, response.text)


async def test_run_of_another_thread_is_404(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    run = await agent_run(sdk, thread_id)
    other_thread = await new_thread(sdk)

    for page in ("messages", "events"):
        response = await live_api.get(f"/threads/{other_thread}/runs/{run['run_id']}/{page}")
        assert response.status_code == 404, page


# --- Deleting -------------------------------------------------------------------------------


async def test_deleting_a_run_removes_its_events_and_keeps_the_others(
    sdk: Any, live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    kept = await agent_run(sdk, thread_id)
    doomed = await agent_run(sdk, thread_id)

    await sdk.runs.delete(thread_id, doomed["run_id"])

    messages = await get_json(live_api, f"/threads/{thread_id}/messages")
    assert {m["run_id"] for m in messages} == {kept["run_id"]}
    assert not await RunEvent.objects.filter(run_id=doomed["run_id"]).aexists()
    assert not await RunModelUsage.objects.filter(run_id=doomed["run_id"]).aexists()


async def test_deleting_a_thread_removes_its_journal(sdk: Any) -> None:
    thread_id = await new_thread(sdk)
    await agent_run(sdk, thread_id)
    assert await RunEvent.objects.filter(thread_id=thread_id).aexists()

    await sdk.threads.delete(thread_id)

    assert not await RunEvent.objects.filter(thread_id=thread_id).aexists()
    assert not await RunModelUsage.objects.filter(run__thread_id=thread_id).aexists()
