"""SSE of runs on a live daphne server: the wire format, every stream mode, joins and resumes."""

import asyncio
import json
import re

import httpx
import pytest

from tests.fixtures import new_thread, streamed_resumable_run
from tests.live import poll_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HUMAN = {"messages": [{"role": "user", "content": "hello"}]}
HEARTBEAT = b": heartbeat\r\n\r\n"
FRAME = re.compile(
    rb"event: (?P<event>[^\r\n]+)\r\ndata: (?P<data>[^\r\n]*)\r\nid: (?P<id>\d+)\r\n\r\n"
)


async def collect(stream) -> list:
    return [part async for part in stream]


def names(parts) -> list[str]:
    return [part.event for part in parts]


async def first_tick(sdk, thread_id) -> bool:
    """Whether the thread's `slow` run has checkpointed a step (its `ticks` only grow)."""
    return bool(((await sdk.threads.get_state(thread_id))["values"] or {}).get("ticks"))


# --- the wire format --------------------------------------------------------------------------


async def test_stream_frames_are_exactly_the_contracts_on_raw_bytes(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        async with client.stream(
            "POST",
            f"/threads/{thread_id}/runs/stream",
            json={"assistant_id": "echo", "input": HUMAN, "stream_mode": ["values", "updates"]},
            headers=headers,
        ) as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"
    run_id = response.headers["content-location"].rsplit("/", 1)[1]
    assert response.headers["content-location"] == f"/api/threads/{thread_id}/runs/{run_id}"
    assert response.headers["location"] == f"/threads/{thread_id}/runs/{run_id}/stream"

    frames = list(FRAME.finditer(body))
    # nothing else on the wire but heartbeats (a cold server may take a while to start a run)
    assert b"".join(match.group(0) for match in frames) == body.replace(HEARTBEAT, b"")
    events = [match["event"].decode() for match in frames]
    ids = [int(match["id"]) for match in frames]
    assert events[0] == "metadata"
    assert json.loads(frames[0]["data"]) == {"run_id": run_id, "thread_id": thread_id, "attempt": 1}
    assert events[-1] == "end" and frames[-1]["data"] == b"null"
    assert ids == sorted(set(ids))  # strictly increasing
    assert {"values", "updates"} <= set(events)
    for match in frames:
        json.loads(match["data"])


async def test_final_status_is_persisted_before_the_stream_ends(sdk):
    thread_id = await new_thread(sdk)
    created = {}
    async for _ in sdk.runs.stream(
        thread_id, "echo", input=HUMAN, on_run_created=lambda meta: created.update(meta)
    ):
        pass
    assert (await sdk.runs.get(thread_id, created["run_id"]))["status"] == "success"
    assert (await sdk.threads.get(thread_id))["status"] == "idle"


# --- stream modes -----------------------------------------------------------------------------


async def test_values_mode_streams_the_state_after_each_step(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(sdk.runs.stream(thread_id, "echo", input=HUMAN))
    assert names(parts)[0] == "metadata" and names(parts)[-1] == "end"
    values = [part.data for part in parts if part.event == "values"]
    assert values[-1]["messages"][-1]["content"] == "echo: hello"


async def test_updates_mode_streams_each_nodes_update(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(sdk.runs.stream(thread_id, "echo", input=HUMAN, stream_mode="updates"))
    updates = [part.data for part in parts if part.event == "updates"]
    assert updates and "echo" in updates[-1]
    assert "values" not in names(parts)


async def test_messages_tuple_mode_streams_message_chunks_with_metadata(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(
        sdk.runs.stream(thread_id, "agent", input=HUMAN, stream_mode="messages-tuple")
    )
    tuples = [part.data for part in parts if part.event == "messages"]
    assert len(tuples) > 1
    chunk, metadata = tuples[0]
    assert "content" in chunk and "type" in chunk
    assert isinstance(metadata, dict)


async def test_legacy_messages_mode_streams_partial_and_complete_messages(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(sdk.runs.stream(thread_id, "agent", input=HUMAN, stream_mode="messages"))
    events = set(names(parts))
    assert "messages/partial" in events
    assert "messages/metadata" in events


async def test_custom_mode_streams_what_nodes_write(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(
        sdk.runs.stream(thread_id, "slow", input={"steps": 3, "delay": 0}, stream_mode="custom")
    )
    assert [part.data for part in parts if part.event == "custom"] == [
        {"tick": 1},
        {"tick": 2},
        {"tick": 3},
    ]


@pytest.mark.parametrize("mode", ["debug", "tasks", "checkpoints", "events"])
async def test_diagnostic_modes_stream_events_named_after_them(sdk, mode):
    thread_id = await new_thread(sdk)
    parts = await collect(sdk.runs.stream(thread_id, "echo", input=HUMAN, stream_mode=mode))
    assert mode in names(parts)
    assert names(parts)[-1] == "end"


async def test_several_modes_at_once(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(
        sdk.runs.stream(
            thread_id,
            "slow",
            input={"steps": 2, "delay": 0},
            stream_mode=["values", "updates", "custom", "tasks"],
        )
    )
    assert {"metadata", "values", "updates", "custom", "tasks", "end"} <= set(names(parts))


async def test_subgraph_events_are_namespaced_with_stream_subgraphs(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(
        sdk.runs.stream(thread_id, "nested", input={}, stream_mode="updates", stream_subgraphs=True)
    )
    nested = [part.event for part in parts if part.event.startswith("updates|")]
    assert nested and all(re.fullmatch(r"updates\|child:[^|]+", name) for name in nested)


async def test_a_graph_error_streams_error_then_end(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(sdk.runs.stream(thread_id, "failing", input={}))
    assert names(parts)[-2:] == ["error", "end"]
    assert parts[-2].data["error"] == "GraphFailure"


async def test_interrupts_appear_in_values(sdk):
    thread_id = await new_thread(sdk)
    parts = await collect(sdk.runs.stream(thread_id, "ask_human", input={"question": "q"}))
    last_values = [part.data for part in parts if part.event == "values"][-1]
    assert last_values["__interrupt__"][0]["value"] == {"question": "q"}


# --- joins and resumes ------------------------------------------------------------------------


async def test_join_stream_of_a_running_run_follows_it_live(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(
        thread_id, "slow", input={"steps": 4, "delay": 0.2}, stream_mode="custom"
    )
    parts = await collect(sdk.runs.join_stream(thread_id, run["run_id"]))
    assert names(parts)[0] == "metadata"
    assert names(parts)[-1] == "end"
    assert {"tick": 4} in [part.data for part in parts if part.event == "custom"]


async def test_join_stream_filters_by_stream_mode(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(
        thread_id,
        "slow",
        input={"steps": 3, "delay": 0.2},
        stream_mode=["custom", "values"],
    )
    parts = await collect(sdk.runs.join_stream(thread_id, run["run_id"], stream_mode="custom"))
    assert set(names(parts)) <= {"metadata", "custom", "end"}
    assert "custom" in names(parts)


async def test_join_stream_of_a_finished_run_ends_at_once(sdk):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "echo", input=HUMAN)
    run = (await sdk.runs.list(thread_id))[0]
    parts = await asyncio.wait_for(collect(sdk.runs.join_stream(thread_id, run["run_id"])), 5)
    assert names(parts) == ["metadata", "end"]


async def test_resumable_run_replays_everything_from_last_event_id_minus_one(sdk):
    thread_id = await new_thread(sdk)
    live = await streamed_resumable_run(sdk, thread_id, steps=3, stream_mode=["custom", "values"])
    run_id = live[0].data["run_id"]
    replayed = await collect(sdk.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    assert (replayed[0].event, replayed[0].data) == ("metadata", live[0].data)
    assert [(p.event, p.data, p.id) for p in replayed[1:]] == [
        (p.event, p.data, p.id) for p in live[1:]
    ]


async def test_resumable_run_resumes_exactly_after_last_event_id(sdk):
    thread_id = await new_thread(sdk)
    live = await streamed_resumable_run(sdk, thread_id, steps=3)
    run_id = live[0].data["run_id"]
    cut = live[2]
    resumed = await collect(sdk.runs.join_stream(thread_id, run_id, last_event_id=cut.id))
    assert (resumed[0].event, resumed[0].data) == ("metadata", live[0].data)
    assert [(p.event, p.data, p.id) for p in resumed[1:]] == [
        (p.event, p.data, p.id) for p in live[3:]
    ]
    assert names(resumed)[-1] == "end"


async def sse_frames(client, method, path, **kwargs) -> list[bytes]:
    """The raw frames of an SSE response, heartbeats left out."""
    async with client.stream(method, path, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        body = await response.aread()
    return [chunk for chunk in body.split(b"\r\n\r\n") if chunk and not chunk.startswith(b":")]


@pytest.mark.parametrize("last_event_id", ["-1", "0", "2"])
async def test_a_resumed_connection_never_sends_an_id_twice(
    daphne_server, sdk, headers, last_event_id
):
    thread_id = await new_thread(sdk)
    live = await streamed_resumable_run(sdk, thread_id, steps=3)
    run_id = live[0].data["run_id"]
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        frames = await sse_frames(
            client,
            "GET",
            f"/threads/{thread_id}/runs/{run_id}/stream",
            headers={**headers, "Last-Event-ID": last_event_id},
        )
    # metadata without `id:` leaves the client's last id where it was
    assert frames[0].startswith(b"event: metadata\r\ndata: ") and b"\r\nid:" not in frames[0]
    resumed_ids = [int(frame.rsplit(b"\r\nid: ", 1)[1]) for frame in frames[1:]]
    events_ids = [int(p.id) for p in live[1:]]  # after the first connection's metadata (id 0)
    seen_ids = [event_id for event_id in events_ids if event_id <= int(last_event_id)]
    assert seen_ids + resumed_ids == events_ids


async def test_the_end_after_the_largest_last_event_id_is_an_id_the_server_accepts(
    daphne_server, sdk, headers
):
    """Joined after the largest id `Last-Event-ID` takes, an ended run's `end` carries an id
    that a reconnection may send back (it was 2**63, which is a 422)."""
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "echo", input=HUMAN, stream_resumable=True)
    await sdk.runs.join(thread_id, run["run_id"])
    path = f"/threads/{thread_id}/runs/{run['run_id']}/stream"
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        frames = await sse_frames(
            client, "GET", path, headers={**headers, "Last-Event-ID": str(2**63 - 1)}
        )
        end_id = frames[-1].rsplit(b"\r\nid: ", 1)[1].decode()
        again = await sse_frames(client, "GET", path, headers={**headers, "Last-Event-ID": end_id})

    assert frames[-1].startswith(b"event: end\r\n")
    assert int(end_id) == 2**63 - 1
    assert again[-1].startswith(b"event: end\r\n")


async def test_resumable_run_joined_mid_way_gets_missed_events_then_live_ones(sdk):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(
        thread_id,
        "slow",
        input={"steps": 6, "delay": 0.15},
        stream_mode="custom",
        stream_resumable=True,
    )
    await poll_until(  # mid-way: its first step is done, and stored, before the join
        lambda: first_tick(sdk, thread_id), "the run's first step"
    )
    parts = await collect(sdk.runs.join_stream(thread_id, run["run_id"], last_event_id="-1"))
    ticks = [part.data["tick"] for part in parts if part.event == "custom"]
    assert ticks == [1, 2, 3, 4, 5, 6]
    assert parts[0].event == "metadata"  # without an id: the connection resumes (-1)
    ids = [int(part.id) for part in parts[1:]]
    assert ids == sorted(set(ids))


async def test_bad_last_event_id_is_422(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "echo", input=HUMAN)
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        response = await client.get(
            f"/threads/{thread_id}/runs/{run['run_id']}/stream",
            headers={**headers, "Last-Event-ID": "abc"},
        )
    assert response.status_code == 422


async def test_join_stream_accepts_stream_modes_as_a_json_array(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    await sdk.runs.wait(thread_id, "echo", input=HUMAN)
    run = (await sdk.runs.list(thread_id))[0]
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        ok = await client.get(
            f"/threads/{thread_id}/runs/{run['run_id']}/stream",
            params={"stream_modes": '["values","updates"]'},
            headers=headers,
        )
        bad = await client.get(
            f"/threads/{thread_id}/runs/{run['run_id']}/stream",
            params={"stream_mode": '["values","bogus"]'},
            headers=headers,
        )
    assert ok.status_code == 200
    assert bad.status_code == 422


async def test_a_client_that_never_reads_does_not_stall_the_run(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    body = json.dumps(
        {
            "assistant_id": "slow",
            "input": {"steps": 300, "delay": 0},
            "stream_mode": ["custom", "values", "updates", "debug"],
            "on_disconnect": "continue",
        }
    ).encode()
    host, port = daphne_server.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /api/threads/{thread_id}/runs/stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    try:

        async def succeeded() -> bool:
            runs = await sdk.runs.list(thread_id)
            return bool(runs) and runs[0]["status"] == "success"

        await poll_until(succeeded, "the unread stream's run to succeed")
    finally:
        writer.close()


async def test_join_with_accept_event_stream_answers_sse(daphne_server, sdk, headers):
    thread_id = await new_thread(sdk)
    run = await sdk.runs.create(thread_id, "slow", input={"steps": 3, "delay": 0.1})
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        response = await client.get(
            f"/threads/{thread_id}/runs/{run['run_id']}/join",
            headers={**headers, "Accept": "text/event-stream"},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [match["event"] for match in FRAME.finditer(response.content)]
    assert events[0] == b"metadata" and events[-1] == b"end"
