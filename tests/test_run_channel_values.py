"""A run's input or `command.update` holding a value its graph's state channels refuse (a number
where `add_messages` wants messages, a message of an unknown role) is a 422 at admission on every
create endpoint of the live server, naming the field, and changes nothing.

Before, LangGraph stored the value as a pending write of the thread's latest checkpoint before
its reducer failed on it: the run ended `error`, and then `GET /threads/{t}/state` and
`/history` answered 500 on that thread and, for a `command.update`, every later run failed too.
"""

import httpx
import pytest

from runs.models import Run
from tests.fixtures import CREATE_PATHS, post_create, thread_after_a_run

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

REFUSED = (
    ("input", {"input": {"messages": 5}}),
    ("input", {"input": {"messages": [5]}}),
    ("input", {"input": {"messages": [{"role": "weird", "content": "x"}]}}),
    ("command", {"command": {"update": {"messages": 5}}}),
    ("command", {"command": {"update": {"messages": [{"role": "weird"}]}, "goto": "echo"}}),
)
HELLO = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("path", CREATE_PATHS)
def test_a_value_the_graph_refuses_is_422_and_changes_nothing(daphne_server, headers, path):
    with httpx.Client(base_url=daphne_server.api_url, headers=headers, timeout=30) as client:
        thread_id, state = thread_after_a_run(client, "echo", HELLO)
        runs_before = Run.objects.count()
        wrong_answers = []
        for field, fields in REFUSED:
            status, detail = post_create(
                client, path, thread_id, {"assistant_id": "echo", **fields}
            )
            if status != 422 or field not in (detail or {}):
                wrong_answers.append((fields, status, detail))
        assert wrong_answers == []
        assert Run.objects.count() == runs_before
        after = client.get(f"/threads/{thread_id}/state")
        assert after.status_code == 200, after.text
        assert after.json() == state
        assert client.post(f"/threads/{thread_id}/history", json={}).status_code == 200
        again = client.post(
            f"/threads/{thread_id}/runs/wait", json={"assistant_id": "echo", "input": HELLO}
        )
        assert [m["content"] for m in again.json()["messages"]] == ["hi", "echo: hi"] * 2


async def test_the_sdk_gets_the_422_and_the_thread_goes_on(sdk):
    thread = await sdk.threads.create()
    await sdk.runs.wait(thread["thread_id"], "echo", input=HELLO)
    with pytest.raises(httpx.HTTPStatusError, match="messages") as refused:
        await sdk.runs.wait(thread["thread_id"], "echo", command={"update": {"messages": 5}})
    assert refused.value.response.status_code == 422
    state = await sdk.threads.get_state(thread["thread_id"])
    assert [m["content"] for m in state["values"]["messages"]] == ["hi", "echo: hi"]
    final = await sdk.runs.wait(thread["thread_id"], "echo", input=HELLO)
    assert len(final["messages"]) == 4


@pytest.mark.parametrize(
    "fields",
    [
        {"input": {"messages": [{"role": "user", "content": "hi"}], "not_a_channel": 5}},
        {"command": {"update": {"messages": [{"role": "user", "content": "hi"}]}}},
        {"command": {"update": [["messages", [{"role": "user", "content": "hi"}]]]}},
    ],
)
def test_values_the_graph_takes_still_run(daphne_server, headers, fields):
    with httpx.Client(base_url=daphne_server.api_url, headers=headers, timeout=30) as client:
        response = client.post("/runs/wait", json={"assistant_id": "echo", **fields})
        assert response.status_code == 200, response.text
        assert "__error__" not in response.json()


@pytest.mark.parametrize("field", ["input", "command"])
def test_removing_a_message_the_thread_holds_runs_and_one_it_lacks_is_422(
    daphne_server, headers, field
):
    """A refusal that depends on the thread's values: empty channels refuse any removal by id,
    so a thread's run is checked again on its latest values before it is refused."""
    with httpx.Client(base_url=daphne_server.api_url, headers=headers, timeout=30) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        first = client.post(
            f"/threads/{thread_id}/runs/wait", json={"assistant_id": "echo", "input": HELLO}
        ).json()

        def remove(message_id: str) -> httpx.Response:
            update = {"messages": [{"type": "remove", "content": "", "id": message_id}]}
            fields = {"input": update} if field == "input" else {"command": {"update": update}}
            return client.post(
                f"/threads/{thread_id}/runs/wait", json={"assistant_id": "echo", **fields}
            )

        lacking = remove("not-a-message-of-the-thread")
        assert lacking.status_code == 422, lacking.text
        assert "doesn't exist" in lacking.json()["detail"][field][0]
        held = remove(first["messages"][0]["id"])
        assert held.status_code == 200, held.text
        state = client.get(f"/threads/{thread_id}/state").json()
        assert first["messages"][0]["id"] not in [m["id"] for m in state["values"]["messages"]]
