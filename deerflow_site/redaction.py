"""Secrets kept out of everything a run's config reaches on its way out of the server.

One rule: an entry of a run's `config` or `context` (at any depth) whose key names a secret
(`SECRET_KEY_PARTS`) holds a secret. Where the run's request is shown (the API's run, the admin)
those entries read `REDACTED` (`redact_secrets`). Everything else the run produces can carry the
values on under other names (LangGraph copies configurable values into checkpoint metadata, the
`debug`, `checkpoints` and `events` stream modes show the whole config, a tool may echo one), so a
`Redactor` made from the run's request replaces the secret values themselves wherever they appear:
stream events live and stored, the journal, the webhook payload.
"""

from collections.abc import Iterable
from typing import Any

#: A key naming a secret contains one of these (case-insensitive).
SECRET_KEY_PARTS = ("api_key", "token", "secret", "password", "authorization")
REDACTED = "***"
#: A secret this short is replaced only where a whole string equals it: inside longer text it
#: would match too much that is not it.
MIN_SECRET_INSIDE_TEXT = 6


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


def secret_values(value: Any) -> set[str]:
    """The strings held under secret-naming keys anywhere in `value` (a JSON-able value)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found |= _strings(item) if _is_secret(key) else secret_values(item)
    elif isinstance(value, list):
        for item in value:
            found |= secret_values(item)
    return found


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value} if value and value != REDACTED else set()
    if isinstance(value, dict):
        return set().union(*(_strings(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(item) for item in value)) if value else set()
    return set()


class Redactor:
    """Replaces a run's secret values (see the module's rule) in JSON-able values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.whole = frozenset(secrets)
        # Longest first, so that a secret containing another is replaced whole.
        self.inside = sorted(
            (s for s in self.whole if len(s) >= MIN_SECRET_INSIDE_TEXT), key=len, reverse=True
        )

    @classmethod
    def for_run(cls, kwargs: dict[str, Any] | None) -> "Redactor":
        """The redactor of a run's request (`Run.kwargs`): its config's and context's secrets."""
        kwargs = kwargs or {}
        return cls(secret_values(kwargs.get("config")) | secret_values(kwargs.get("context")))

    def __bool__(self) -> bool:
        return bool(self.whole)

    def redact(self, value: Any) -> Any:
        """`value` (JSON-able: dicts, lists, scalars) with every secret value replaced by
        `REDACTED`, in keys and strings alike; `value` itself when there is nothing to hide."""
        if not self.whole:
            return value
        return self._walk(value)

    def redact_text(self, text: str) -> str:
        if text in self.whole:
            return REDACTED
        for secret in self.inside:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {
                self.redact_text(key) if isinstance(key, str) else key: self._walk(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._walk(item) for item in value]
        return value
