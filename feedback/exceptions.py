"""What feedback services refuse, in the domain's words."""

from deerflow_site.errors import Conflict, NotFound


class FeedbackNotFound(NotFound):
    """You have given no feedback on this run."""


class FeedbackExists(Conflict):
    """You have already given feedback on this run: PUT changes it."""
