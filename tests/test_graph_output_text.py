"""What a graph puts in its state reaches clients as UTF-8 text, whatever its strings hold: a
lone surrogate (what Python's `surrogateescape` makes of bytes that are not UTF-8, e.g. a file
name a tool lists) is streamed as U+FFFD, and the stream still ends with `end`; the thread's
state, its row and /wait's answer are what the checkpoint kept of it."""

import json
from pathlib import Path
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from tests.fixtures import sdk_client, token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

GRAPH = """
import os
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    files: list[str]


def list_files(state: State) -> dict:
    return {"files": [os.fsdecode(b"caf\\xe9.txt"), "plain.txt"]}


builder = StateGraph(State)
builder.add_node("list_files", list_files)
builder.add_edge(START, "list_files")
builder.add_edge("list_files", END)
graph = builder.compile()
"""


@pytest.fixture
def listing_server(live_server_factory: Any, tmp_path: Path) -> Any:
    """A live server with a graph `listing` whose node returns a non-UTF-8 file name."""
    (tmp_path / "listing.py").write_text(GRAPH)
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"listing": "./listing.py:graph"}}))
    server = live_server_factory.start(DEERFLOW_LANGGRAPH_CONFIG=str(config))
    yield server
    server.stop()


async def test_a_lone_surrogate_in_the_state_streams_as_replacement_character(
    listing_server: Any, user: Any, closing: Any
) -> None:
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    sdk = sdk_client(closing, listing_server.api_url, key, timeout=20)
    thread = await sdk.threads.create()

    parts = [
        part
        async for part in sdk.runs.stream(
            thread["thread_id"], "listing", input={}, stream_mode=["values", "updates"]
        )
    ]

    assert [part.event for part in parts][-1] == "end", parts
    assert parts[-2].data == {"files": ["caf\ufffd.txt", "plain.txt"]}
    # The thread's state is what the checkpoint kept (LangGraph's serialisation replaces the
    # surrogate its own way), and the thread row and /wait's answer say the same.
    answer = await sdk.runs.wait(thread["thread_id"], "listing", input={})
    state = await sdk.threads.get_state(thread["thread_id"])
    stored = await sdk.threads.get(thread["thread_id"])
    assert answer == state["values"] == stored["values"]
    assert answer["files"][1] == "plain.txt"
    answer["files"][0].encode("utf-8")
