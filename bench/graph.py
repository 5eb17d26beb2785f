"""The benchmark's graph, served by both servers: one node that echoes its input.

Deterministic, no model and no network. `sleep` (seconds, capped) keeps a run busy so that the
memory phase can hold streams open; the state is replaced, not accumulated, so that a thread's
hundredth run costs what its first did.
"""

import asyncio
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

MAX_SLEEP_SECONDS = 900.0


class EchoState(TypedDict, total=False):
    text: str
    sleep: float
    reply: str


async def echo(state: EchoState) -> EchoState:
    delay = min(max(float(state.get("sleep") or 0.0), 0.0), MAX_SLEEP_SECONDS)
    if delay:
        await asyncio.sleep(delay)
    return {"reply": f"echo: {state.get('text', '')}"}


builder = StateGraph(EchoState)
builder.add_node("echo", echo)
builder.add_edge(START, "echo")
builder.add_edge("echo", END)
graph = builder.compile(name="bench")
