"""Every JSON body field of every endpoint, given a value of each wrong kind, on the live server:
never a 5xx, always a JSON answer, and a refusal (4xx) creates no thread and no run.

The endpoints and their fields come from the server's own OpenAPI schema (a field added later is
swept too), one level into object fields (`config.recursion_limit`, `command.update`, `ttl.ttl`).
Each field, in a body otherwise valid for its endpoint, gets a string, an object, an array, a
boolean, the smallest and largest 64-bit integers, 1e300 and a string of 100 kB (under
the body limit, over what a PostgreSQL index entry holds). Bodies the JSON parser refuses whole
(NaN, Infinity, NUL, a lone surrogate, nesting 10 000 deep) and one over the size limit go to
every endpoint too: a 422 or a 413. tests/test_request_bounds.py tells those apart in detail.

The create endpoints that stream or wait (`…/runs/stream`, `…/runs/wait`) parse and admit their
body as `POST …/runs` does; they are left out here (each accepted body would wait for its run),
and tests/test_run_body_types.py, test_run_channel_values.py and test_run_input_shapes.py send
wrong values to all seven.
"""

import json
import uuid
from typing import Any

import httpx
import pytest
from django.utils import timezone

from runs.models import Run
from threads.models import Thread

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

LONG_STRING = "x" * 100_000
WRONG_VALUES: dict[str, Any] = {
    "string": "x",
    "object": {"k": "v"},
    "array": ["x"],
    "boolean": True,
    "smallest integer": -(2**63) + 1,
    "largest integer": 2**63 - 1,
    "1e300": 1e300,
    "100 kB string": LONG_STRING,
}
#: Bodies the parser refuses whole (raw text).
REFUSED_TEXTS = {
    "NaN": '{"a": NaN}',
    "Infinity": '{"a": -Infinity}',
    "lone surrogate key": '{"\\ud800": 1}',
    "NUL key": '{"\\u0000": 1}',
    "NUL in a string": '{"a": "\\u0000"}',
    "10 MB string": json.dumps({"a": "x" * 10_000_000}),
    "depth 10 000": "[" * 10_000 + "]" * 10_000,
}
#: A body valid for each operation (by its path's tail), to which one field is set wrong.
BASE_BODIES = {
    "runs": {"assistant_id": "echo", "input": {"messages": []}},
    "prune": {"thread_ids": [str(uuid.uuid4())]},
    "state": {"values": {}},
    "feedback": {"rating": 1},
    "cancel": {"run_ids": [str(uuid.uuid4())]},
}


def base_body(path: str) -> dict[str, Any]:
    if "{run_id}" not in path and path.endswith(("/runs", "/runs/batch")):
        return dict(BASE_BODIES["runs"])
    return dict(BASE_BODIES.get(path.rsplit("/", 1)[-1], {}))


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node` with its $ref (and a lone allOf) followed."""
    while True:
        if "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        elif len(node.get("allOf", [])) == 1:
            node = node["allOf"][0]
        else:
            return node


def field_paths(schema: dict[str, Any], body: dict[str, Any]) -> list[tuple[str, ...]]:
    """The fields of a body schema, and those of its object fields, as key paths."""
    body = resolve(schema, body)
    if body.get("type") == "array":
        body = resolve(schema, body.get("items", {}))
    paths = []
    for name, field in (body.get("properties") or {}).items():
        paths.append((name,))
        field = resolve(schema, field)
        for options in field.get("oneOf", []) + field.get("anyOf", []) + [field]:
            for inner in resolve(schema, options).get("properties") or {}:
                paths.append((name, inner))
    return sorted(set(paths))


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, body schema) of every operation that takes a JSON body."""
    found = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            if "application/json" in content and not _streams_or_waits(path):
                found.append((method.upper(), path, content["application/json"]["schema"]))
    return found


def _streams_or_waits(path: str) -> bool:
    return "{run_id}" not in path and path.endswith(("/runs/stream", "/runs/wait"))


def with_value(base: Any, field: tuple[str, ...], value: Any) -> Any:
    body = json.loads(json.dumps(base))
    holder = body
    for key in field[:-1]:
        if not isinstance(holder.get(key), dict):
            holder[key] = {}
        holder = holder[key]
    holder[field[-1]] = value
    return body


def written_since(moment: Any) -> int:
    """Threads and runs created since `moment`."""
    return (
        Thread.objects.filter(created_at__gte=moment).count()
        + Run.objects.filter(created_at__gte=moment).count()
    )


def concrete(path: str, values: dict[str, str]) -> str:
    """`path` with its parameters filled from `values`, any other one with a new UUID."""
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    while "{" in path:
        path = path.split("{", 1)[0] + str(uuid.uuid4()) + path.split("}", 1)[1]
    return path


def send(client: httpx.Client, method: str, url: str, text: str) -> tuple[httpx.Response, str]:
    """The answer to a JSON body, and what is wrong with it ("" when nothing is)."""
    moment = timezone.now()
    response = client.request(
        method, url, content=text, headers={"Content-Type": "application/json"}
    )
    if response.status_code >= 500:
        return response, "5xx"
    if "json" not in response.headers.get("content-type", ""):
        return response, "not JSON"
    if response.status_code >= 400 and written_since(moment):
        return response, "refused but written"
    return response, ""


def test_every_field_of_every_body_given_a_wrong_kind_is_no_5xx(daphne_server, headers):
    wrong_answers = []
    swept = 0
    with httpx.Client(base_url=daphne_server.url, headers=headers, timeout=60) as client:
        api = daphne_server.api_url.removeprefix(daphne_server.url)
        schema = client.get(f"{api}/openapi.json").json()
        thread_id = client.post(f"{api}/threads", json={}).json()["thread_id"]
        run = client.post(
            f"{api}/threads/{thread_id}/runs/wait",
            json={"assistant_id": "echo", "input": {"messages": []}},
        )
        run_id = run.headers["Content-Location"].rsplit("/", 1)[-1]
        values = {"thread_id": thread_id, "run_id": run_id, "assistant_id": "echo"}
        for method, path, body_schema in operations(schema):
            url = concrete(path, values)
            for field in field_paths(schema, body_schema):
                for kind, value in WRONG_VALUES.items():
                    body = with_value(base_body(path), field, value)
                    text = json.dumps([body] if path.endswith("/runs/batch") else body)
                    response, problem = send(client, method, url, text)
                    swept += 1
                    if problem:
                        label = f"{'.'.join(field)}={kind}"
                        wrong_answers.append((problem, method, path, label, response.text[:150]))
            for kind, text in REFUSED_TEXTS.items():
                response, problem = send(client, method, url, text)
                if problem or response.status_code not in (413, 422):
                    wrong_answers.append((problem, method, path, kind, response.text[:150]))
    assert swept > 500
    assert wrong_answers == []
