"""The ASGI application daphne serves; with the embedded worker on, it also runs graphs."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deerflow_site.settings")

django_application = get_asgi_application()


async def application(scope: dict, receive: object, send: object) -> None:
    """Django, starting the embedded run worker on the first event of this process's loop."""
    from runs.engine.embedded import ensure_embedded_worker

    ensure_embedded_worker()
    await django_application(scope, receive, send)
