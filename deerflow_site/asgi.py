"""The ASGI application daphne serves; with the embedded worker on, it also runs graphs."""

import logging
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deerflow_site.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402 - after Django is set up
from django.core import signals  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.db import close_old_connections, reset_queries  # noqa: E402

from deerflow_site.bridge import request_thread  # noqa: E402

logger = logging.getLogger("deerflow_site")

#: Responses that stay open for a run's life: SSE streams, waits and joins.
LONG_LIVED_SUFFIXES = ("/stream", "/wait", "/join")


class RunServerHandler(ASGIHandler):
    """Django's ASGI handler, with pooled request threads, and none for long-lived responses.

    Django gives every request a thread-sensitive context, hence a new thread (and database
    connection) per request, which lives as long as the response: one idle thread per open
    stream. Short requests borrow a pooled thread instead (`bridge.request_thread`). Streams and
    waits do their database work on a bounded pool, so they run without that context.
    """

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # refused, as Django does
        elif scope["path"].endswith(LONG_LIVED_SUFFIXES):
            await self.handle(scope, receive, send)
        else:
            async with request_thread():
                await self.handle(scope, receive, send)


def connection_upkeep_at_request_end() -> None:
    """Django's request_started receivers are sync, so under ASGI every request paid a thread
    hop just to call them. Their work moves to request_finished, which Django sends in the hop
    that closes the response anyway: a connection past CONN_MAX_AGE or broken is closed at the
    end of the request that used it, and the next request's first query checks the connection
    first (CONN_HEALTH_CHECKS), as it did; DEBUG's query log starts afresh after each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_started.disconnect(reset_queries)
    signals.request_finished.connect(reset_queries)


connection_upkeep_at_request_end()
django_application = RunServerHandler()

if settings.AUTH_MODE == "local":
    logger.warning(
        "LOCAL AUTH MODE: every request acts as the user %r, without credentials. "
        "Use DEERFLOW_AUTH_MODE=token for anything reachable by others.",
        settings.LOCAL_USERNAME,
    )


async def application(scope: dict, receive: object, send: object) -> None:
    """Django, starting the embedded run worker on the first event of this process's loop."""
    from runs.engine import ensure_embedded_worker

    ensure_embedded_worker()
    await django_application(scope, receive, send)
