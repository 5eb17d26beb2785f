"""Raw HTTP helpers for the journal and feedback endpoints, as the deer-flow frontend calls them
(the official SDKs have no methods for these)."""

from typing import Any

import httpx

from tests.waiting import PATIENCE, read_until

AGENT_QUESTION = {"messages": [{"role": "user", "content": "What is 6 * 7?"}]}


async def agent_run(sdk: Any, thread_id: str, question: str = "What is 6 * 7?") -> dict:
    """A finished run of the offline agent (its journal is complete once the run has ended)."""
    await sdk.runs.wait(
        thread_id, "agent", input={"messages": [{"role": "user", "content": question}]}
    )
    return (await sdk.runs.list(thread_id, limit=1))[0]


async def get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    """GET `path` expecting 200; its JSON body."""
    response = await client.get(path, params=params)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


async def run_events(client: httpx.AsyncClient, thread_id: str, run_id: str, **params: Any) -> Any:
    return await get_json(client, f"/threads/{thread_id}/runs/{run_id}/events", **params)


async def journal_until(
    client: httpx.AsyncClient,
    thread_id: str,
    run_id: str,
    accept: Any,
    *,
    within: float = PATIENCE,
) -> list[dict[str, Any]]:
    """The run's events once `accept(events)` holds (the journal is written in batches, so they
    are polled); AssertionError after `within` seconds."""
    return await read_until(
        lambda: run_events(client, thread_id, run_id, limit=2000),
        f"run {run_id}'s journal to be as wanted",
        accept=accept,
        within=within,
    )


def types_of(events: list[dict[str, Any]], *categories: str) -> list[str]:
    """The event types, in order, of the events in `categories` (all when none given)."""
    return [e["event_type"] for e in events if not categories or e["category"] in categories]
