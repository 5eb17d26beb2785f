"""Identifier rules from the contract: thread ids, run ids."""

import re
import uuid

from deerflow_site.api.errors import Invalid

THREAD_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate_thread_id(value: object, *, field: str = "thread_id") -> str:
    """A thread id (a UUID or `[A-Za-z0-9_-]{1,64}`), or 422 naming the field."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not THREAD_ID_PATTERN.match(value):
        raise Invalid({field: ["Must be a UUID or match ^[A-Za-z0-9_-]{1,64}$."]})
    return value


def validate_uuid(value: object, *, field: str) -> uuid.UUID:
    """A UUID, or 422 naming the field."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise Invalid({field: ["Must be a UUID."]}) from None
