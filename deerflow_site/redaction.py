"""Secrets kept out of what clients read: a run's config and context, checkpoint metadata.

Shared by the runs API (a run's kwargs) and the engine (LangGraph copies string config values
into checkpoint metadata, which the state endpoints show).
"""

from typing import Any

#: A key naming a secret contains one of these (case-insensitive).
SECRET_KEY_PARTS = ("api_key", "token", "secret", "password", "authorization")
REDACTED = "***"


def redact_secrets(value: Any) -> Any:
    """`value` with every entry whose key names a secret replaced by `REDACTED`."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _is_secret(key) else redact_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    return value


def _is_secret(key: Any) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)
