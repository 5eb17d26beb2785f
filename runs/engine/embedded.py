"""The worker inside the web process (the embedded default)."""


def ensure_embedded_worker() -> None:
    """Start the embedded worker on the running loop once, when settings ask for it."""
