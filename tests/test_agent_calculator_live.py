"""One chat message cannot freeze the server: the agent's calculator refuses a power tower
before computing it, the run ends normally and the server keeps answering."""

import pytest

from tests.fixtures import new_thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "expression", ["(((9**100)**100)**100)**10", "((((9**100)**100)**100)**100)**10"]
)
async def test_a_power_tower_in_a_chat_message_is_refused_and_the_run_ends(sdk, expression):
    thread_id = await new_thread(sdk)

    final = await sdk.runs.wait(
        thread_id,
        "agent",
        input={"messages": [{"role": "user", "content": f"what is {expression}?"}]},
    )
    other = await sdk.threads.create()

    tool_results = [m["content"] for m in final["messages"] if m["type"] == "tool"]
    assert tool_results == ["error: result too large"]
    assert final["messages"][-1]["type"] == "ai"
    assert other["thread_id"]
