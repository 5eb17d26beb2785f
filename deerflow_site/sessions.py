"""Django's database sessions, whose keys are only what Django makes them of.

Django makes a session key of 32 lowercase letters and digits, and takes any cookie of 8
characters or more as one to look up: a cookie holding a NUL (`"\\000"` in a quoted cookie) made
that lookup a 500 on PostgreSQL, which cannot take a NUL in a text parameter, on every page that
reads the session. Here a key of other characters is no session, as an unknown one is.
"""

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS

KEY_CHARS = frozenset(VALID_KEY_CHARS)


class SessionStore(db.SessionStore):
    """Django's database session store (`SESSION_ENGINE = "deerflow_site.sessions"`)."""

    def _validate_session_key(self, key: str | None) -> bool:
        return bool(super()._validate_session_key(key)) and KEY_CHARS.issuperset(key or "")
