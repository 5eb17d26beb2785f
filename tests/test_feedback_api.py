"""Feedback on runs, live through raw HTTP as the deer-flow frontend sends it."""

import asyncio
from typing import Any

import pytest

from feedback.models import Feedback
from tests.fixtures import new_thread
from tests.journal_support import agent_run, get_json

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def finished_run(sdk: Any, thread_id: str, question: str = "What is 6 * 7?") -> str:
    return (await agent_run(sdk, thread_id, question))["run_id"]


async def test_post_creates_feedback_and_get_returns_it(sdk: Any, live_api: Any, user: Any) -> None:
    thread_id = await new_thread(sdk)
    run_id = await finished_run(sdk, thread_id)
    path = f"/threads/{thread_id}/runs/{run_id}/feedback"

    created = await live_api.post(
        path, json={"rating": 1, "comment": "spot on", "message_id": "m1"}
    )
    fetched = await get_json(live_api, path)

    assert created.status_code == 200, created.text
    assert fetched == created.json()
    assert fetched["rating"] == 1 and fetched["comment"] == "spot on"
    assert fetched["message_id"] == "m1"
    assert (fetched["run_id"], fetched["thread_id"]) == (run_id, thread_id)
    assert fetched["user"] == str(user.pk)
    assert {"feedback_id", "created_at"} <= fetched.keys()


async def test_second_post_is_409_and_put_replaces(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    run_id = await finished_run(sdk, thread_id)
    path = f"/threads/{thread_id}/runs/{run_id}/feedback"
    first = (await live_api.post(path, json={"rating": 1})).json()

    again = await live_api.post(path, json={"rating": -1})
    replaced = await live_api.put(path, json={"rating": -1, "comment": "wrong"})

    assert again.status_code == 409 and "detail" in again.json()
    assert replaced.status_code == 200
    assert replaced.json()["feedback_id"] == first["feedback_id"]
    assert (replaced.json()["rating"], replaced.json()["comment"]) == (-1, "wrong")
    assert await Feedback.objects.filter(run_id=run_id).acount() == 1


async def test_put_creates_when_there_is_none(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    run_id = await finished_run(sdk, thread_id)

    response = await live_api.put(
        f"/threads/{thread_id}/runs/{run_id}/feedback", json={"rating": -1}
    )

    assert response.status_code == 200
    assert response.json()["rating"] == -1 and response.json()["comment"] is None


async def test_delete_removes_the_callers_feedback_then_404(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    run_id = await finished_run(sdk, thread_id)
    path = f"/threads/{thread_id}/runs/{run_id}/feedback"
    await live_api.post(path, json={"rating": 1})

    deleted = await live_api.delete(path)
    gone = await live_api.get(path)
    deleted_again = await live_api.delete(path)

    assert deleted.status_code == 204
    assert gone.status_code == 404 and "detail" in gone.json()
    assert deleted_again.status_code == 404


async def test_stats_count_every_users_feedback(
    sdk: Any, live_api: Any, other_live_api: Any, other_user: Any
) -> None:
    thread_id = await new_thread(sdk)
    run_id = await finished_run(sdk, thread_id)
    await _share_with(thread_id, other_user)
    path = f"/threads/{thread_id}/runs/{run_id}/feedback"
    await live_api.post(path, json={"rating": 1})
    assert (await other_live_api.post(path, json={"rating": -1})).status_code == 200

    stats = await get_json(live_api, f"{path}/stats")
    others = await get_json(other_live_api, path)

    assert stats == {"run_id": run_id, "total": 2, "positive": 1, "negative": 1}
    assert others["rating"] == -1


async def _share_with(thread_id: str, user: Any) -> None:
    from guardian.shortcuts import assign_perm

    from deerflow_site.bridge import Executor, call_sync
    from threads.models import Thread

    thread = await Thread.objects.aget(pk=thread_id)
    await call_sync(assign_perm, "view_thread", user, thread, on=Executor.THREAD_SENSITIVE)


async def test_thread_feedback_lists_the_callers_feedback_on_every_run(
    sdk: Any, live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    first = await finished_run(sdk, thread_id)
    second = await finished_run(sdk, thread_id, "What is 2 + 2?")
    await finished_run(sdk, thread_id, "What is 3 + 3?")
    for run_id, rating in ((first, 1), (second, -1)):
        await live_api.post(f"/threads/{thread_id}/runs/{run_id}/feedback", json={"rating": rating})

    listed = await get_json(live_api, f"/threads/{thread_id}/feedback")

    assert [(f["run_id"], f["rating"]) for f in listed] == [(first, 1), (second, -1)]


@pytest.mark.parametrize(
    "body", [{"rating": 2}, {"rating": 0}, {"rating": "1"}, {"rating": True}, {}, {"rating": 1.0}]
)
async def test_rating_other_than_plus_or_minus_one_is_422(
    sdk: Any, live_api: Any, body: dict
) -> None:
    thread_id = await new_thread(sdk)
    run_id = await finished_run(sdk, thread_id)
    path = f"/threads/{thread_id}/runs/{run_id}/feedback"

    for send in (live_api.post, live_api.put):
        response = await send(path, json=body)
        assert response.status_code == 422, response.text
        assert "rating" in response.json()["detail"]
    assert not await Feedback.objects.filter(run_id=run_id).aexists()


async def test_unknown_run_or_bad_run_id_is_404_or_422(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    unknown = f"/threads/{thread_id}/runs/00000000-0000-4000-8000-000000000000/feedback"

    assert (await live_api.post(unknown, json={"rating": 1})).status_code == 404
    assert (await live_api.get(unknown)).status_code == 404
    assert (await live_api.get(f"{unknown}/stats")).status_code == 404
    bad = await live_api.get(f"/threads/{thread_id}/runs/not-a-uuid/feedback")
    assert bad.status_code == 422


async def test_concurrent_duplicate_posts_give_one_200_and_one_409(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    run_ids = [await finished_run(sdk, thread_id, f"What is {n} + 1?") for n in range(5)]

    for run_id in run_ids:
        path = f"/threads/{thread_id}/runs/{run_id}/feedback"
        answers = await asyncio.gather(
            live_api.post(path, json={"rating": 1}), live_api.post(path, json={"rating": -1})
        )
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        assert await Feedback.objects.filter(run_id=run_id).acount() == 1


async def test_another_users_thread_is_404_on_every_feedback_endpoint(
    sdk: Any, live_api: Any, other_live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    run_id = await finished_run(sdk, thread_id)
    path = f"/threads/{thread_id}/runs/{run_id}/feedback"
    await live_api.post(path, json={"rating": 1})

    answers = [
        await other_live_api.put(path, json={"rating": 1}),
        await other_live_api.post(path, json={"rating": 1}),
        await other_live_api.get(path),
        await other_live_api.delete(path),
        await other_live_api.get(f"{path}/stats"),
        await other_live_api.get(f"/threads/{thread_id}/feedback"),
    ]

    assert [a.status_code for a in answers] == [404] * 6
    assert await Feedback.objects.filter(run_id=run_id).acount() == 1


async def test_last_ai_message_of_each_run_carries_the_callers_feedback(
    sdk: Any, live_api: Any
) -> None:
    thread_id = await new_thread(sdk)
    rated = await finished_run(sdk, thread_id)
    unrated = await finished_run(sdk, thread_id, "What is 2 + 2?")
    given = (
        await live_api.post(
            f"/threads/{thread_id}/runs/{rated}/feedback", json={"rating": -1, "comment": "no"}
        )
    ).json()

    messages = await get_json(live_api, f"/threads/{thread_id}/messages")

    carrying = [m for m in messages if "feedback" in m]
    assert [m["run_id"] for m in carrying] == [rated, unrated]
    for message in carrying:  # the final answer of its run, not the tool call
        assert message["event_type"] == "llm.ai.response"
        assert message["content"]["content"].startswith("The result is")
    assert carrying[0]["feedback"] == {
        "feedback_id": given["feedback_id"],
        "rating": -1,
        "comment": "no",
    }
    assert carrying[1]["feedback"] is None
    # A window holding only the tool-calling answer of a run attaches nothing.
    first_ai = next(m for m in messages if m["event_type"] == "llm.ai.response")
    window = await get_json(
        live_api, f"/threads/{thread_id}/messages", after_seq=first_ai["seq"] - 1, limit=1
    )
    assert "feedback" not in window[0]


async def test_deleting_a_run_or_thread_removes_its_feedback(sdk: Any, live_api: Any) -> None:
    thread_id = await new_thread(sdk)
    kept = await finished_run(sdk, thread_id)
    doomed = await finished_run(sdk, thread_id, "What is 2 + 2?")
    for run_id in (kept, doomed):
        await live_api.post(f"/threads/{thread_id}/runs/{run_id}/feedback", json={"rating": 1})

    await sdk.runs.delete(thread_id, doomed)
    assert [f["run_id"] for f in await get_json(live_api, f"/threads/{thread_id}/feedback")] == [
        kept
    ]
    await sdk.threads.delete(thread_id)

    assert not await Feedback.objects.filter(thread_id=thread_id).aexists()
