"""JSON responses that are complete when a view returns them.

DRF's `Response` is rendered by Django after the view, and under ASGI Django renders it in one
more thread hop per request. A view on a hot path answers `json_response(...)` instead: the same
JSON (DRF's JSON renderer, or bytes the view wrote itself), rendered in the view's own thread.
"""

from typing import Any

from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer

_renderer = JSONRenderer()


def json_response(
    data: Any = None, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> HttpResponse:
    """A 200 with `data` as DRF renders it, or with `body`, JSON already written."""
    content = body if body is not None else _renderer.render(data)
    return HttpResponse(content, content_type="application/json", headers=headers)
