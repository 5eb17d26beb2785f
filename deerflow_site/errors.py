"""Domain errors: what a client can cause, in the domain's words, without HTTP.

Services, selectors and the engine raise subclasses of these six kinds (`ThreadBusy` is a
Conflict, `AssistantNotFound` a NotFound, ...); `deerflow_site.api.errors.error_status` is the
one place that says which HTTP status each kind is.
"""

from typing import Any


class DomainError(Exception):
    """A failure a client can cause; `detail` is what they are told (a message, or a mapping of
    field names to messages)."""

    def __init__(self, detail: Any = None) -> None:
        self.detail = detail if detail is not None else self.default_detail()
        super().__init__(self.detail)

    def default_detail(self) -> str:
        """The class's docstring as one line (a docstring may wrap over several)."""
        return " ".join((self.__class__.__doc__ or "Bad request.").split())


class BadRequest(DomainError):
    """The request cannot be carried out."""


class Forbidden(DomainError):
    """You do not have permission to perform this action."""


class NotFound(DomainError):
    """Not found."""


class Conflict(DomainError):
    """The request conflicts with the current state."""


class Invalid(DomainError):
    """The request is invalid."""


class QuotaExceeded(DomainError):
    """Over a quota: the detail names the limit."""
