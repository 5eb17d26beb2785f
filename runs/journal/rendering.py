"""The journal's events as the API writes them, from their stored JSON text.

An event's `content` and `metadata` are stored as JSON (SQLite's checked text, PostgreSQL's
jsonb) and are already what the API sends: the page splices their text into the answer instead
of decoding and encoding them again, which was most of a page's cost. The other fields are
written as DRF's JSON renderer wrote them (UUIDs as text, times in ISO 8601 with `Z`), so the
answer is the same JSON as before.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from deerflow_site.dbcompat import db_datetime
from threads.serializers import iso_time

#: The sentinel of "no feedback key": only the last AI message of each run carries one.
NO_FEEDBACK: Any = object()


class StoredEvent(NamedTuple):
    """One event as read: `content` and `metadata` are their stored JSON text (None: SQL NULL);
    `feedback`, on a run's last AI message of a chat history page, the caller's feedback
    (None: none given); other events have no feedback key."""

    seq: int
    thread_id: str
    run_id: str
    event_type: str
    category: str
    content: str | None
    metadata: str | None
    created_at: datetime
    feedback: dict[str, Any] | None = NO_FEEDBACK


def stored_event(row: tuple[Any, ...]) -> StoredEvent:
    """A StoredEvent from a row of the selectors' window statement (database types made
    uniform: the run id as a hyphenated UUID, the time aware)."""
    seq, thread_id, run_id, event_type, category, content, metadata, created_at = row
    return StoredEvent(
        seq=int(seq),
        thread_id=thread_id,
        run_id=uuid_text(run_id),
        event_type=event_type,
        category=category,
        content=content,
        metadata=metadata,
        created_at=db_datetime(created_at),
    )


def uuid_text(value: Any) -> str:
    """A UUID column's value as `xxxxxxxx-xxxx-...` (SQLite stores 32 hex digits)."""
    text = str(value)
    if len(text) == 32:
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return text


def event_json(event: StoredEvent) -> bytes:
    """One event as a JSON object: the fields in their API order, content and metadata as
    stored, and `feedback` when the event carries one (None included)."""
    head = orjson.dumps(
        {
            "seq": event.seq,
            "thread_id": event.thread_id,
            "run_id": event.run_id,
            "event_type": event.event_type,
            "category": event.category,
        }
    )
    parts = [
        head[:-1],
        b',"content":',
        _stored_json(event.content),
        b',"metadata":',
        _stored_json(event.metadata),
        b',"created_at":',
        orjson.dumps(iso_time(event.created_at)),
    ]
    if event.feedback is not NO_FEEDBACK:
        parts += [b',"feedback":', orjson.dumps(event.feedback)]
    parts.append(b"}")
    return b"".join(parts)


def events_json(events: Iterable[StoredEvent]) -> bytes:
    """A JSON array of events."""
    return b"[" + b",".join(event_json(event) for event in events) + b"]"


def _stored_json(text: str | None) -> bytes:
    return b"null" if text is None else text.encode()
