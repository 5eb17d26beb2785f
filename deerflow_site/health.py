"""`GET /api/ok`: whether this process can reach the database and the channel layer.

Both are checked at once, each bounded by HEALTH_CHECK_SECONDS; a load balancer takes a process
that answers 503 out of rotation.
"""

import asyncio
from collections.abc import Awaitable, Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers

from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus

HEALTH_CHECK_SECONDS = 3.0


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _reachable(check: Callable[[], Awaitable[None]]) -> bool:
    try:
        await asyncio.wait_for(check(), HEALTH_CHECK_SECONDS)
    except Exception:  # unreachable, whatever the driver says: that is the answer
        return False
    return True


HEALTH = inline_serializer(
    "Health",
    {
        "ok": serializers.BooleanField(),
        "detail": serializers.CharField(required=False, help_text="what is down"),
        "database": serializers.BooleanField(required=False),
        "channel_layer": serializers.BooleanField(required=False),
    },
)


@extend_schema(
    operation_id="ok",
    auth=[],
    responses={
        200: HEALTH,
        503: OpenApiResponse(HEALTH, description="The database or the channel layer is down."),
    },
)
async def ok(request: HttpRequest) -> JsonResponse:
    """200 `{"ok": true}`; 503 `{"ok": false, "detail": ..., "database": bool,
    "channel_layer": bool}` when either cannot be reached. No credentials needed."""
    database, channel_layer = await asyncio.gather(
        _reachable(lambda: call_sync(_select_one, on=Executor.API)), _reachable(bus.ping)
    )
    if database and channel_layer:
        return JsonResponse({"ok": True})
    down = [
        name for name, up in (("database", database), ("channel layer", channel_layer)) if not up
    ]
    return JsonResponse(
        {
            "ok": False,
            "detail": f"unavailable: {', '.join(down)}",
            "database": database,
            "channel_layer": channel_layer,
        },
        status=503,
    )
