"""The ASGI application daphne serves; with the embedded worker on, it also runs graphs."""

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deerflow_site.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - after Django is set up

if settings.AUTH_MODE == "local":
    logging.getLogger("deerflow_site").warning(
        "LOCAL AUTH MODE: every request acts as the user %r, without credentials. "
        "Use DEERFLOW_AUTH_MODE=token for anything reachable by others.",
        settings.LOCAL_USERNAME,
    )


async def application(scope: dict, receive: object, send: object) -> None:
    """Django, starting the embedded run worker on the first event of this process's loop."""
    from runs.engine.embedded import ensure_embedded_worker

    ensure_embedded_worker()
    await django_application(scope, receive, send)
