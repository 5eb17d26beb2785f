"""An ASGI application for `tests/test_stream_server.py`: it answers (a whole body, a stream's
first chunk, or a body's last chunk after its headers went out), and before those bytes could
leave it gives its event loop a callback that holds the loop until the test has read them (the
file `FLUSH_TEST_RELEASE` names exists), as a run's own work on the loop would hold it."""

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import django

django.setup()  # the server reads Django's settings and the API's errors (its body limit)

#: The longest the loop is held (seconds) when the test never releases it.
HOLD_AT_MOST = 60.0


def _hold_the_loop(release: Path) -> None:
    deadline = time.monotonic() + HOLD_AT_MOST
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # busy work on the loop's thread, not an await


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    release = Path(os.environ["FLUSH_TEST_RELEASE"])
    streams = scope["path"] == "/stream"
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-test", b"1")]}
    if scope["path"] == "/wait":  # as a wait answers: the headers first, the answer later
        await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(_hold_the_loop, release)
    if scope["path"] != "/wait":
        await send(start)
    await send({"type": "http.response.body", "body": b"first", "more_body": streams})
    if streams:
        await asyncio.sleep(0)  # the loop is held here until the test has the first chunk
        await send({"type": "http.response.body", "body": b" then the rest"})
