"""Identifier rules from the contract: thread ids, run ids, checkpoint ids.

Every pattern here is anchored with `\\A...\\Z` and checked with `fullmatch`: `$` also matches
before a trailing newline, and a newline in an id ends up in a header (`Content-Location`).
"""

import re
import uuid

from deerflow_site.errors import Invalid

THREAD_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
#: Paths under /threads that are endpoints: a thread of one of these ids could be created, but
#: never read, changed or deleted at /threads/{id} (the endpoint's 405 answered instead).
RESERVED_THREAD_IDS = frozenset({"search", "count", "prune"})
#: A UUID as the SDKs send it: 8-4-4-4-12 hex digits, or the 32 digits alone. Python's own
#: uuid.UUID() is looser (braces, `urn:uuid:`, surrounding whitespace, `_` between digits).
UUID_PATTERN = re.compile(
    r"\A(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32})\Z"
)


def validate_thread_id(value: object, *, field: str = "thread_id") -> str:
    """A thread id (a UUID or `[A-Za-z0-9_-]{1,64}`, not one of RESERVED_THREAD_IDS), or 422
    naming the field."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not THREAD_ID_PATTERN.fullmatch(value):
        raise Invalid({field: ["Must be a UUID or match ^[A-Za-z0-9_-]{1,64}$."]})
    if value in RESERVED_THREAD_IDS:
        reserved = ", ".join(sorted(RESERVED_THREAD_IDS))
        raise Invalid({field: [f"Must not be one of {reserved}: /threads/{value} is an endpoint."]})
    return value


def parse_uuid(value: object) -> uuid.UUID | None:
    """`value` as a UUID if it is one (a UUID, or a string matching UUID_PATTERN), else None."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or not UUID_PATTERN.fullmatch(value):
        return None
    return uuid.UUID(value)


def validate_uuid(value: object, *, field: str) -> uuid.UUID:
    """A UUID, or 422 naming the field."""
    parsed = parse_uuid(value)
    if parsed is None:
        raise Invalid({field: ["Must be a UUID."]})
    return parsed
