"""The OpenAPI schema: how drf-spectacular describes our authenticators, our error bodies and
the async views outside DRF.

- Every operation documents the errors it can answer (`Error`: `{"detail": ...}`) by one rule,
  `ApiAutoSchema.error_statuses`, so no view repeats them.
- The async views (`async_views.by_method`) carry a thin `APIView` declaration (`callback.cls`)
  whose methods are the handlers themselves: `@extend_schema` on a handler describes it, next to
  its code, and drf-spectacular lists it like any DRF view.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

#: What each error status means, as the API documents it.
ERROR_DESCRIPTIONS = {
    400: (
        "A malformed or too large request: its request line and headers over their limits (see"
        " the server's `detail`), or too many query parameters. Any operation can answer it."
    ),
    401: "No valid credentials.",
    403: "Lacking the API scope, or a session's CSRF check failed.",
    404: "Not found, or not yours.",
    405: "Method not allowed.",
    409: "Conflict with the current state (a busy thread, an id already taken).",
    413: "The request body is too large.",
    415: "The request body is not JSON.",
    422: "Invalid request: `detail` names the fields (malformed JSON too).",
    429: "A limit was reached; `detail` names it.",
}
#: Media type of the Server-Sent Events endpoints.
EVENT_STREAM = "text/event-stream"


class ErrorSerializer(serializers.Serializer):
    """Every error body: `detail` is a message, or an object naming the invalid fields (then
    `message` says them in one line)."""

    detail = serializers.JSONField(help_text="a message, or {field: [messages]}")
    message = serializers.CharField(
        required=False,
        help_text="with {field: [messages]}: them in one line ('field: message; ...'), "
        "the text the SDKs show",
    )

    class Meta:
        ref_name = "Error"


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, documenting every operation's error responses."""

    def error_statuses(self, operation: dict[str, Any]) -> list[int]:
        """The error statuses an operation can answer, by what it takes and who may call it."""
        statuses = [400]  # the request line, headers and query string are bounded everywhere
        if any(operation.get("security") or []):  # [] or [{}]: no credentials needed
            statuses += [401, 403]
        if "{" in self.path or operation.get("parameters"):
            statuses.append(404)
        if self.method in ("POST", "PUT", "PATCH"):
            statuses += [413, 415]
        if "requestBody" in operation or operation.get("parameters"):  # ids in paths too
            statuses.append(422)
        return statuses

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = {"application/json": {"schema": self._error_component()}}
        responses = operation["responses"]
        for status in self.error_statuses(operation):
            responses.setdefault(str(status), {"description": ERROR_DESCRIPTIONS[status]})
        for status, response in responses.items():
            if status.startswith(("4", "5")) and not response.get("content"):
                response["content"] = error
        return operation

    def _error_component(self) -> dict[str, str]:
        component = self.resolve_serializer(ErrorSerializer, "response")
        return component.ref


def error(description: str) -> OpenApiResponse:
    """An error response of an operation, in `extend_schema(responses=...)`."""
    return OpenApiResponse(ErrorSerializer, description=description)


def event_stream(description: str) -> dict[tuple[int, str], OpenApiResponse]:
    """A 200 `text/event-stream` response for `extend_schema(responses=...)`: `description`
    says which events (`event:` names) it carries."""
    return {(200, EVENT_STREAM): OpenApiResponse(str, description=description)}


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "deerflow_site.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "deerflow_site.api.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-Api-Key"}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "deerflow_site.api.authentication.CsrfSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


class LocalUserScheme(OpenApiAuthenticationExtension):
    """The local mode asks for no credentials: no security scheme, an empty requirement."""

    target_class = "deerflow_site.api.authentication.LocalUserAuthentication"
    name: list[str] = []  # drf-spectacular reads a list as "these schemes"

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list]:
        return {}

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return []
