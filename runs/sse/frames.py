"""The SSE wire format: event frames, heartbeats, which events stream modes let through."""

import re
from collections.abc import AsyncIterator, Iterable

from django.http import StreamingHttpResponse

from deerflow_site.api.parsers import MAX_INTEGER
from deerflow_site.errors import Invalid
from deerflow_site.streaming import BytesStreamingResponse
from runs.engine import bus

HEARTBEAT = b": heartbeat\r\n\r\n"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
#: Events always delivered, whatever stream modes a join asked for.
CONTROL_EVENTS = frozenset({"metadata", "error", "end", "gap"})
#: The event names each client stream mode produces.
EVENTS_OF_MODE = {
    "messages-tuple": ("messages",),
    "messages": ("messages/partial", "messages/complete", "messages/metadata"),
}


#: A run's event id in `Last-Event-ID`: ASCII digits, `-1` for "from the start".
EVENT_ID_PATTERN = re.compile(r"\A(?:-1|[0-9]{1,19})\Z")


def parse_event_id(value: str) -> int:
    """An event id of `Last-Event-ID` (-1 ≤ id ≤ 2**63-1); anything else is a 422 naming it."""
    text = value.strip()
    if not EVENT_ID_PATTERN.fullmatch(text) or int(text) > MAX_INTEGER:
        raise Invalid({"Last-Event-ID": ["Must be an event id (an integer, or -1)."]})
    return int(text)


def frame(event: str, data: str, event_id: int | str | None) -> bytes:
    """One SSE event: `data` is one line of JSON. Without `event_id` the frame has no `id:`
    field, which leaves the client's last event id as it was (the SSE spec)."""
    if event_id is None:
        return f"event: {event}\r\ndata: {data}\r\n\r\n".encode()
    return f"event: {event}\r\ndata: {data}\r\nid: {event_id}\r\n\r\n".encode()


def metadata_frame(
    *, run_id: str, thread_id: str, attempt: int, event_id: int | str | None
) -> bytes:
    """The `metadata` event a client gets first for each run (no id on a resumed connection)."""
    payload = {"run_id": run_id, "thread_id": thread_id, "attempt": attempt}
    return frame("metadata", bus.dumps(payload), event_id)


class EventStreamResponse(BytesStreamingResponse):
    """A `text/event-stream` response: its chunks, bytes already, go to the server as they come
    (Django's two wrapping generators would be resumed at every heartbeat, for hours)."""


def sse_response(
    stream: AsyncIterator[bytes], *, headers: dict[str, str] | None = None
) -> StreamingHttpResponse:
    """A `text/event-stream` response over `stream` (bytes), never cached nor buffered by
    proxies."""
    response = EventStreamResponse(stream, content_type="text/event-stream")
    for name, value in {**SSE_HEADERS, **(headers or {})}.items():
        response[name] = value
    return response


def event_filter(modes: Iterable[str] | None) -> frozenset[str] | None:
    """The event names (before any `|namespace`) that the stream modes let through; None: all."""
    if not modes:
        return None
    names = set(CONTROL_EVENTS)
    for mode in modes:
        names.update(EVENTS_OF_MODE.get(mode, (mode,)))
    return frozenset(names)


def wanted(event: str, names: frozenset[str] | None) -> bool:
    """Whether an event passes the filter of `event_filter`."""
    return names is None or event.split("|", 1)[0] in names
