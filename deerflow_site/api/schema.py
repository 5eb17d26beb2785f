"""How the OpenAPI schema describes our authenticators (drf-spectacular extensions)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
    target_class = "deerflow_site.api.authentication.LocalUserAuthentication"
    name = "localMode"

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list]:
        return {}

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {}
