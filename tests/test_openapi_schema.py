"""The OpenAPI schema documents the whole API: every route the URL resolver serves under the API
prefix, with explicit enum names, generated without a warning, valid OpenAPI 3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.drainage import GENERATOR_STATS
from openapi_spec_validator import validate
from rest_framework.views import APIView

from runs.models import Run
from tests.live import REPO_ROOT
from threads.models import Thread

pytestmark = pytest.mark.django_db

#: Routes under the API prefix that are not API operations: the schema and docs themselves, and
#: the catch-all that answers unknown paths with a JSON 404.
NOT_OPERATIONS = {"openapi", "api-docs", "api-not-found"}
SSE_OPERATIONS = [
    ("/api/threads/{thread_id}/runs/stream", "post"),
    ("/api/runs/stream", "post"),
    ("/api/threads/{thread_id}/runs/{run_id}/stream", "get"),
    ("/api/threads/{thread_id}/runs/{run_id}/stream", "post"),
    ("/api/threads/{thread_id}/stream", "get"),
]


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/openapi.json")
    assert response.status_code == 200
    return json.loads(response.content)


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """(route, pattern) of every URL pattern, routes joined as Django joins them."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        else:
            yield route, pattern


def openapi_path(route: str) -> str:
    """A Django route as an OpenAPI path: `threads/<str:thread_id>` -> `/threads/{thread_id}`."""
    route = route.removeprefix("^").removesuffix("$")
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def served_methods(callback: Any) -> list[str]:
    """The HTTP methods a view serves (besides OPTIONS/HEAD); fails on a view it cannot read."""
    view_class = getattr(callback, "cls", None)
    assert view_class is not None and issubclass(view_class, APIView), (
        f"{callback!r} is neither a DRF view nor an async_views.by_method view: the schema "
        "cannot see it"
    )
    methods = view_class().allowed_methods
    return [method.lower() for method in methods if method not in ("OPTIONS", "HEAD")]


def api_operations() -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every operation the URL resolver serves under the API prefix."""
    operations = set()
    for route, pattern in walk(get_resolver().url_patterns):
        path = openapi_path(route)
        if not path.startswith(settings.API_PREFIX + "/") or pattern.name in NOT_OPERATIONS:
            continue
        for method in served_methods(pattern.callback):
            operations.add((path, method))
    return operations


def test_every_api_route_is_in_the_schema(schema):
    documented = {(path, method) for path, item in schema["paths"].items() for method in item}
    operations = api_operations()
    assert len(operations) > 40
    assert operations - documented == set()
    assert documented - operations == set()


def test_schema_generation_is_warning_free_and_valid(tmp_path):
    GENERATOR_STATS.reset()  # count this generation's warnings only
    # --fail-on-warn: any warning or error of drf-spectacular fails; --validate: its own check.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "s.json"))


def test_schema_validates_as_openapi_3(schema):
    validate(schema)


def test_local_mode_schema_is_warning_free_and_valid(tmp_path):
    """What `scripts/serve` serves: the local mode, whose requests need no credentials."""
    out = tmp_path / "schema.json"
    command = ["spectacular", "--fail-on-warn", "--validate", "--format", "openapi-json"]
    result = subprocess.run(
        [sys.executable, "manage.py", *command, "--file", str(out)],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "DEERFLOW_AUTH_MODE": "local",
            "DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION": "true",
            "DEERFLOW_VAR_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    local_schema = json.loads(out.read_text())
    validate(local_schema)
    create = local_schema["paths"]["/api/threads"]["post"]
    assert create["security"] == [{}]
    assert "401" not in create["responses"]


def test_enums_have_the_domain_names(schema):
    components = schema["components"]["schemas"]
    assert {"RunStatus", "ThreadStatus", "MultitaskStrategy"} <= components.keys()
    assert components["RunStatus"]["enum"] == list(Run.Status.values)
    assert components["ThreadStatus"]["enum"] == list(Thread.Status.values)
    hashed = [name for name in components if re.fullmatch(r"\w+[0-9a-f]{3}Enum", name)]
    assert hashed == []


@pytest.mark.parametrize(("path", "method"), SSE_OPERATIONS)
def test_streams_are_documented_as_server_sent_events_with_their_event_names(schema, path, method):
    response = schema["paths"][path][method]["responses"]["200"]
    assert "text/event-stream" in response["content"]
    assert "metadata" in response["description"] and "end" in response["description"]


def test_every_operation_documents_its_errors_as_json(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    content = response["content"]["application/json"]["schema"]
                    assert content == {"$ref": "#/components/schemas/Error"}, (path, method)
            if any(operation.get("security") or []):  # credentials needed
                assert {"401", "403"} <= operation["responses"].keys(), (path, method)


@pytest.mark.parametrize("component", ["Thread", "Run", "Assistant", "ThreadState"])
def test_fields_that_select_may_leave_out_are_not_required(schema, component):
    assert "required" not in schema["components"]["schemas"][component]
