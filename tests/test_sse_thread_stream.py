"""`GET /threads/{id}/stream` on a live server: every run of a thread over one connection."""

import asyncio

import httpx
import pytest
from django.contrib.auth.models import Group
from guardian.shortcuts import assign_perm, remove_perm
from langgraph_sdk.errors import NotFoundError

from deerflow_site.bridge import Executor, call_sync
from tests.fixtures import streamed_resumable_run
from threads.models import Thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


class Listener:
    """A thread stream read in the background: its parts as they come."""

    def __init__(self, stream) -> None:
        self.parts: list = []
        self._came = asyncio.Event()
        self._task = asyncio.ensure_future(self._read(stream))

    async def _read(self, stream) -> None:
        async for part in stream:
            self.parts.append(part)
            self._came.set()

    def ended(self) -> set[str]:
        """The runs whose `end` came."""
        return {_run_of(p) for p in self.parts if p.event == "end"}

    async def until_ended(self, run_ids: set[str]) -> list:
        """The parts of `run_ids` once each has ended (the stream never closes by itself)."""
        async with asyncio.timeout(60):
            while not run_ids <= self.ended():
                self._came.clear()
                await self._came.wait()
        return [p for p in self.parts if _run_of(p) in run_ids]

    async def listening(self, sdk, thread_id: str) -> None:
        """Until the stream has shown it listens: the stream sends nothing before a run, so
        echo runs of the thread are made, one at a time, until one's `end` comes (a fixed
        0.5 s sleep for the subscription raced a loaded machine, and the first run was lost)."""
        async with asyncio.timeout(60):
            while not self.ended():
                await sdk.runs.wait(thread_id, "echo", input={"probe": True})

    def close(self) -> None:
        self._task.cancel()


def _run_of(part) -> str:
    """The run of a thread stream's part (its id is `<run_id>:<seq>`)."""
    return (part.id or "").split(":", 1)[0]


async def parts_until_ends(stream, ends: int) -> list:
    """The parts of a thread stream until `ends` runs have ended (it never closes by itself)."""
    parts = []
    async for part in stream:
        parts.append(part)
        if sum(p.event == "end" for p in parts) == ends:
            break
    return parts


async def test_thread_stream_follows_every_run_of_the_thread(sdk):
    thread_id = (await sdk.threads.create())["thread_id"]
    listener = Listener(await sdk.threads.join_stream(thread_id))
    try:
        await listener.listening(sdk, thread_id)
        first_run = await sdk.runs.create(thread_id, "echo", input={"value": 1})
        first = await sdk.runs.join(thread_id, first_run["run_id"])
        second_run = await sdk.runs.create(thread_id, "echo", input={"value": 2})
        second = await sdk.runs.join(thread_id, second_run["run_id"])
        parts = await listener.until_ended({first_run["run_id"], second_run["run_id"]})
    finally:
        listener.close()

    run_ids = list(dict.fromkeys(p.data["run_id"] for p in parts if p.event == "metadata"))
    assert len(run_ids) == 2
    assert [p.data for p in parts if p.event == "values"][-1] == second
    assert first["value"] == 1
    for run_id in run_ids:
        events = [p for p in parts if p.id.startswith(run_id + ":")]
        assert events[0].event == "metadata" and events[-1].event == "end"
        ids = [int(p.id.rsplit(":", 1)[1]) for p in events]
        assert ids == sorted(set(ids))


async def test_thread_stream_resumes_after_last_event_id_from_stored_events(sdk):
    thread_id = (await sdk.threads.create())["thread_id"]
    live = await streamed_resumable_run(sdk, thread_id, steps=3)
    run_id = live[0].data["run_id"]
    after = f"{run_id}:{live[1].id}"

    parts = await asyncio.wait_for(
        parts_until_ends(await sdk.threads.join_stream(thread_id, last_event_id=after), 1), 10
    )

    assert [p.id for p in parts] == [f"{run_id}:{p.id}" for p in live[2:]]


async def test_a_resumed_thread_stream_sends_metadata_without_an_id(daphne_server, sdk, headers):
    thread_id = (await sdk.threads.create())["thread_id"]
    resumable = {"assistant_id": "slow", "stream_mode": "custom", "stream_resumable": True}
    async with httpx.AsyncClient(
        base_url=daphne_server.api_url, headers=headers, trust_env=False
    ) as client:
        run = (
            await client.post(
                f"/threads/{thread_id}/runs",
                json={**resumable, "input": {"steps": 30, "delay": 0.1}},
            )
        ).json()
        async with client.stream(
            "GET", f"/threads/{thread_id}/stream", headers={"Last-Event-ID": "-1"}
        ) as response:
            first = b""
            async for chunk in response.aiter_bytes():
                first += chunk
                if b"\r\n\r\n" in first:
                    break
        await client.post(f"/threads/{thread_id}/runs/{run['run_id']}/cancel")
    metadata = first.split(b"\r\n\r\n", 1)[0]
    assert metadata.startswith(b"event: metadata\r\n") and b"\r\nid:" not in metadata


async def test_thread_stream_lifecycle_mode_sends_only_starts_and_ends(sdk):
    thread_id = (await sdk.threads.create())["thread_id"]
    listener = Listener(await sdk.threads.join_stream(thread_id, stream_mode="lifecycle"))
    try:
        await listener.listening(sdk, thread_id)
        run = await sdk.runs.create(thread_id, "slow", input={"steps": 2, "delay": 0})
        parts = await listener.until_ended({run["run_id"]})
    finally:
        listener.close()
    assert [p.event for p in parts] == ["metadata", "end"]


async def test_thread_stream_of_another_users_thread_is_404(sdk, other_sdk):
    thread_id = (await other_sdk.threads.create())["thread_id"]
    with pytest.raises(NotFoundError):
        async for _ in await sdk.threads.join_stream(thread_id):
            pass


async def test_thread_stream_rejects_bad_modes_and_cursors(daphne_server, sdk, headers):
    thread_id = (await sdk.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=daphne_server.api_url, trust_env=False) as client:
        bad_mode = await client.get(
            f"/threads/{thread_id}/stream", params={"stream_mode": "state_update"}, headers=headers
        )
        bad_cursor = await client.get(
            f"/threads/{thread_id}/stream", headers={**headers, "Last-Event-ID": "12"}
        )
        bad_thread = await client.get("/threads/bad$id/stream", headers=headers)
    assert (bad_mode.status_code, bad_cursor.status_code, bad_thread.status_code) == (
        422,
        422,
        422,
    )


async def test_a_thread_stream_ends_before_a_run_its_viewer_may_no_longer_see(
    sdk, other_sdk, other_user
):
    """A thread shared with a group: a member's open thread stream follows its runs while the
    share holds; once it is revoked, the next run is not sent and the stream ends (it used to
    go on sending every run, for as long as it stayed open)."""
    thread_id = (await sdk.threads.create())["thread_id"]

    def share(grant) -> None:
        group, _ = Group.objects.get_or_create(name="thread viewers")
        group.user_set.add(other_user)
        grant("view_thread", group, Thread.objects.get(pk=thread_id))

    await call_sync(share, assign_perm, on=Executor.THREAD_SENSITIVE)
    listener = Listener(await other_sdk.threads.join_stream(thread_id))
    try:
        await listener.listening(sdk, thread_id)
        await call_sync(share, remove_perm, on=Executor.THREAD_SENSITIVE)
        secret = await sdk.runs.create(thread_id, "echo", input={"value": "after the revoke"})
        await sdk.runs.join(thread_id, secret["run_id"])
        await asyncio.wait_for(listener._task, 30)  # the stream ended
    finally:
        listener.close()

    assert listener.ended()
    assert secret["run_id"] not in {_run_of(p) for p in listener.parts}
    assert "after the revoke" not in repr([p.data for p in listener.parts])
    with pytest.raises(NotFoundError):
        await other_sdk.threads.get(thread_id)
