"""DRF's content negotiation, answered without parsing for the Accept headers API clients send.

Every DRF view negotiates its renderer from the request's Accept header: DRF parses the header
into media types, orders them by precedence and matches each against each renderer, about as
long as the rest of a short view's set-up. The SDKs and most clients send no Accept header,
`*/*` or `application/json`, to which DRF's answer is always the same: the first renderer when
it is JSON's. `JsonFirstNegotiation` gives that answer at once and leaves everything else (other
headers, `?format=`, a format suffix, other renderers) to DRF.
"""

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

#: Accept headers (None: absent) whose negotiation picks a first renderer of exactly this type.
PLAIN_ACCEPTS = frozenset({None, "*/*", "application/json"})
JSON = "application/json"


class JsonFirstNegotiation(DefaultContentNegotiation):
    """`DefaultContentNegotiation`, with its answer for `PLAIN_ACCEPTS` known in advance."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: Any = None
    ) -> tuple[BaseRenderer, str]:
        if (
            renderers
            and renderers[0].media_type == JSON
            and format_suffix is None
            and request.META.get("HTTP_ACCEPT") in PLAIN_ACCEPTS
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], JSON
        return super().select_renderer(request, renderers, format_suffix)
