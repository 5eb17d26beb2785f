"""Workloads beside create+wait: thread creation, and the realistic chat workload.

Both measure the server's CPU through a callable that returns the CPU seconds the server's
processes have used so far (servers.Server.cpu_seconds), read around the measured part only.
Every loop is bounded by a sample count and a time limit; loopback only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from load import StreamProbe, client, create_thread, read_stream, summary_ms

CHAT_GRAPH_ID = "chat"
#: Tokens of each streamed answer of bench/chat_graph.py (ANSWER_TOKENS there).
CHAT_ANSWER_TOKENS = 200
CHAT_STREAM_MODES = ["messages-tuple", "values"]


async def thread_create(
    base_url: str, *, samples: int, max_seconds: float, cpu_seconds: Callable[[], float]
) -> dict[str, Any]:
    """Sequential `POST /threads` with an empty body: latency, and server CPU per thread.

    Shape: {"samples", "errors", "first_errors", "p50_ms", "p95_ms", "mean_ms", "max_ms",
    "server_cpu_ms_per_thread"}. At most `samples` requests, stopped after `max_seconds`.
    """
    latencies: list[float] = []
    errors: list[str] = []
    async with client(base_url, connections=2) as http:
        await create_thread(http)  # the connection is open before the first sample
        cpu_before = cpu_seconds()
        deadline = time.monotonic() + max_seconds
        for _ in range(samples):
            if time.monotonic() > deadline:
                break
            began = time.monotonic()
            try:
                response = await http.post("/threads", json={})
                ok = response.status_code == 200 and bool(response.json().get("thread_id"))
                problem = "" if ok else f"{response.status_code} {response.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                errors.append(problem)
            else:
                latencies.append(time.monotonic() - began)
        cpu = cpu_seconds() - cpu_before
    made = len(latencies)
    return {
        "samples": made + len(errors),
        "errors": len(errors),
        "first_errors": errors[:3],
        **summary_ms(latencies),
        "server_cpu_ms_per_thread": 1000 * cpu / made if made else None,
    }


def _check_chat_run(probe: StreamProbe) -> str:
    """Why a chat run's stream is not the graph's full answer ('' when it is)."""
    if probe.error:
        return probe.error
    counts = Counter(probe.events)
    if counts["messages"] < CHAT_ANSWER_TOKENS:
        return f"{counts['messages']} messages events, fewer than {CHAT_ANSWER_TOKENS}: {counts}"
    try:
        messages = json.loads(probe.last_data.get("values", b"{}")).get("messages") or []
    except ValueError as exc:
        return f"final values is not JSON: {exc}"
    kinds = [m.get("type") for m in messages[-3:] if isinstance(m, dict)]
    if kinds != ["ai", "tool", "ai"]:
        return f"final values ends with {kinds}, not ai, tool, ai"
    words = len(str(messages[-1].get("content", "")).split())
    if words != CHAT_ANSWER_TOKENS:
        return f"the answer has {words} words, not {CHAT_ANSWER_TOKENS}"
    return ""


async def chat(
    base_url: str,
    *,
    conversations: int,
    turns: int,
    concurrency: int,
    max_seconds: float,
    cpu_seconds: Callable[[], float],
) -> dict[str, Any]:
    """The realistic workload: chats on the `chat` graph, streamed as messages-tuple + values.

    `conversations` threads are made first (not measured). Then `concurrency` of them at a time
    each take `turns` turns, one streamed run per turn (`POST /threads/{t}/runs/stream`), each
    read to its end: a tool call, a tool message and a 200-token answer. A run counts only if
    its stream carried every token and its final `values` ends with the answer.

    Shape: {"runs", "errors", "first_errors", "seconds", "runs_per_second", "events_per_run"
    (by event name, mean), "streamed_events", "first_message" (to the first
    `messages` event) and "run" (latency summaries, ms),
    "server_cpu_ms_per_run", "server_cpu_us_per_event"}. Stopped after `max_seconds`.
    """
    async with client(base_url, connections=concurrency + 4) as http:
        try:
            threads = [await create_thread(http) for _ in range(conversations)]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return {"error": f"POST /threads: {exc!r}"[:500]}
        gate = asyncio.Semaphore(concurrency)
        deadline = time.monotonic() + max_seconds
        events: Counter[str] = Counter()
        to_first_token: list[float] = []
        durations: list[float] = []
        errors: list[str] = []

        async def conversation(index: int, thread_id: str) -> None:
            async with gate:
                for turn in range(turns):
                    if time.monotonic() > deadline:
                        return
                    probe = StreamProbe()
                    body = {
                        "assistant_id": CHAT_GRAPH_ID,
                        "input": {"messages": [{"role": "user", "content": f"q{index}-{turn}"}]},
                        "stream_mode": CHAT_STREAM_MODES,
                    }
                    remaining = max(deadline - time.monotonic(), 1.0)
                    try:
                        await asyncio.wait_for(
                            read_stream(http, f"/threads/{thread_id}/runs/stream", body, probe),
                            remaining,
                        )
                    except TimeoutError:
                        probe.error = probe.error or "timeout"
                    ended = time.monotonic()
                    problem = _check_chat_run(probe)
                    if problem:
                        errors.append(problem)
                        return  # the thread's history is no longer the script's
                    events.update(name for name in probe.events if name != "end")
                    durations.append(ended - probe.opened_at)
                    if "messages" in probe.first_at:
                        to_first_token.append(probe.first_at["messages"] - probe.opened_at)

        began = time.monotonic()
        cpu_before = cpu_seconds()
        await asyncio.gather(*(conversation(i, t) for i, t in enumerate(threads)))
        cpu = cpu_seconds() - cpu_before
        seconds = time.monotonic() - began
    runs = len(durations)
    streamed = sum(events.values())
    return {
        "conversations": conversations,
        "turns": turns,
        "concurrency": concurrency,
        "runs": runs,
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(seconds, 2),
        "runs_per_second": runs / seconds if seconds else None,
        "events_per_run": {name: count / runs for name, count in events.items()} if runs else {},
        "streamed_events": streamed,
        "first_message": summary_ms(to_first_token),
        "run": summary_ms(durations),
        "server_cpu_ms_per_run": 1000 * cpu / runs if runs else None,
        "server_cpu_us_per_event": 1_000_000 * cpu / streamed if streamed else None,
    }
