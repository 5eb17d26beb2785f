"""Bounded input: JSON depth, duplicate keys, 64-bit integers, digit checks and times to live are
422s that store nothing, on every endpoint, never 500s."""

import logging
import re
import uuid
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from deerflow_site.api.serializers import MAX_FILTER_VALUES, unknown_fields
from runs.models import Run
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads

DEEP = "[" * 1000 + "]" * 1000
TOO_DEEP_OBJECT = '{"a": ' * 65 + "1" + "}" * 65
HUGE = 10**23
#: A body two parsers may read two ways (the first value, or the last).
DUPLICATE_KEYS = '{"assistant_id": "echo", "metadata": {}, "metadata": {"owner": "x"}}'


def api_routes(prefix: str = "/api/") -> list[str]:
    """Every path-converter route of the API (`threads/<str:thread_id>/...`), without the prefix."""
    routes = []

    def walk(patterns: list, base: str) -> None:
        for pattern in patterns:
            route = getattr(pattern.pattern, "_route", None)
            if route is None:  # a regex route: the docs, the catch-all
                continue
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, base + route)
            elif isinstance(pattern, URLPattern):
                routes.append(base + route)

    walk(get_resolver().url_patterns, "")
    return sorted({r.removeprefix(prefix.lstrip("/")) for r in routes if r.startswith("api/")})


def concrete(route: str, thread_id: str, run_id: str) -> str:
    values = {"thread_id": thread_id, "run_id": run_id, "assistant_id": "agent"}
    return "/api/" + re.sub(
        r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), str(uuid.uuid4())), route
    )


@pytest.fixture
def existing(api) -> tuple[str, str]:
    """A thread with one (pending) run."""
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    run = api.post(f"/api/threads/{thread_id}/runs", {"assistant_id": "echo"}, format="json")
    return thread_id, run.json()["run_id"]


def stored() -> tuple[int, int]:
    return Thread.objects.count(), Run.objects.count()


@pytest.mark.parametrize("bodies", [(DEEP, TOO_DEEP_OBJECT), (DUPLICATE_KEYS,)])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_json_nested_too_deep_or_with_a_key_twice_is_422_on_every_endpoint(
    api, existing, method, bodies
) -> None:
    before = stored()
    api.raise_request_exception = False
    answers = {}
    for route in api_routes():
        path = concrete(route, *existing)
        for body in bodies:
            response = api.generic(method, path, body, content_type="application/json")
            answers[path] = response.status_code
            # 403: a staff-only route refuses before reading the body
            assert response.status_code in (403, 404, 405, 422), (path, response)
            assert "json" in response["Content-Type"], path

    assert 422 in answers.values()
    assert stored() == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/threads/search", {"offset": HUGE}),
        ("/api/threads/search", {"offset": 2**64}),
        ("/api/threads/search", {"limit": 1e23}),
        ("/api/threads/count", {"metadata": {"n": 10**30}}),
        ("/api/threads", {"ttl": 1e12}),
        ("/api/threads", {"ttl": {"ttl": 1e12, "strategy": "delete"}}),
        ("/api/threads", '{"metadata": {"n": 1e400}}'),
        ("/api/threads/{t}/history", {"metadata": {"step": 10**30}}),
        ("/api/threads/{t}/history", {"limit": HUGE}),
        ("/api/threads/{t}/runs", {"assistant_id": "echo", "config": {"recursion_limit": 10**30}}),
        ("/api/threads/{t}/runs/wait", {"assistant_id": "echo", "input": {"n": -(10**30)}}),
        ("/api/runs/cancel", {"status": "all", "n": 10**19}),
        ("/api/assistants/search", {"offset": HUGE}),
    ],
)
def test_an_integer_beyond_64_bits_or_a_number_too_large_is_422(api, existing, path, body):
    before = stored()

    path = path.format(t=existing[0])
    if isinstance(body, str):
        response = api.generic("POST", path, body, content_type="application/json")
    else:
        response = api.post(path, body, format="json")

    assert response.status_code == 422, response.content
    assert stored() == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/threads", '{"metadata": {"name": "a\\u0000b"}}'),
        ("/api/threads/{t}/runs/wait", '{"assistant_id": "echo", "input": {"text": "\\u0000"}}'),
        ("/api/threads/{t}/runs", '{"assistant_id": "echo", "metadata": {"\\u0000": 1}}'),
        ("/api/threads/{t}/runs/{r}/feedback", '{"rating": 1, "comment": "x\\\\\\u0000"}'),
    ],
)
def test_a_nul_character_in_a_json_string_is_422(api, existing, path, body) -> None:
    before = stored()

    path = path.format(t=existing[0], r=existing[1])
    response = api.generic("POST", path, body, content_type="application/json")

    assert response.status_code == 422, response.content
    assert "NUL" in response.json()["detail"]
    assert stored() == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/threads", '{"metadata": {"a": 1}, "metadata": {"a": 2}}'),
        ("/api/threads/{t}/runs/wait", '{"assistant_id": "echo", "input": {"t": 1, "t": 2}}'),
        ("/api/runs/stream", '{"assistant_id": "echo", "assistant_id": "agent"}'),
        ("/api/runs/batch", '[{"assistant_id": "echo", "config": {"tags": [], "tags": []}}]'),
        ("/api/threads/{t}/state", '{"values": {"messages": [], "messages": []}}'),
        ("/api/assistants/search", '{"limit": 1, "limit": 2}'),
        ("/api/threads/{t}/runs/{r}/feedback", '{"rating": 1, "rating": -1}'),
    ],
)
def test_a_key_twice_in_one_object_is_422_naming_it(api, existing, path, body) -> None:
    """Python's decoder keeps the last value, another parser in front may keep the first: one
    body must not mean two things. DRF's views and the async views alike."""
    before = stored()
    thread_before = Thread.objects.values().get(pk=existing[0])

    path = path.format(t=existing[0], r=existing[1])
    response = api.generic("POST", path, body, content_type="application/json")

    assert response.status_code == 422, response.content
    assert "duplicate key" in response.json()["detail"]
    assert stored() == before
    assert Thread.objects.values().get(pk=existing[0]) == thread_before


def test_an_escaped_backslash_before_u0000_is_no_nul(api) -> None:
    body = '{"metadata": {"path": "C:\\\\u0000"}}'

    response = api.generic("POST", "/api/threads", body, content_type="application/json")

    assert response.status_code == 200, response.content
    assert response.json()["metadata"] == {"path": "C:\\u0000"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # Half of an emoji (a JS string cut between the two UTF-16 units of "😀" and sent by
        # JSON.stringify): UTF-8 has no encoding for it, so a run stored with it broke its SSE
        # stream mid-response and answered 500 on every list of its runs.
        ("/api/threads/{t}/runs/stream", '{"assistant_id": "echo", "input": {"t": "hi \\ud83d"}}'),
        ("/api/threads/{t}/runs/wait", '{"assistant_id": "echo", "input": {"t": "\\ude00 x"}}'),
        ("/api/runs/wait", '{"assistant_id": "echo", "input": {"t": "\\ude00\\ud83d"}}'),
        ("/api/threads/{t}/runs", '{"assistant_id": "echo", "metadata": {"\\udfff": 1}}'),
        ("/api/threads", '{"metadata": {"name": "a\\uD800b"}}'),
        ("/api/threads/{t}/runs/{r}/feedback", '{"rating": 1, "comment": "\\ud83d"}'),
    ],
)
def test_a_lone_surrogate_escape_in_a_json_string_is_422(api, existing, path, body) -> None:
    before = stored()

    path = path.format(t=existing[0], r=existing[1])
    response = api.generic("POST", path, body, content_type="application/json")

    assert response.status_code == 422, response.content
    assert "surrogate" in response.json()["detail"]
    assert stored() == before


def test_a_surrogate_pair_and_an_escaped_backslash_before_ud800_are_text(api) -> None:
    body = '{"metadata": {"emoji": "\\ud83d\\ude00", "path": "C:\\\\ud800"}}'

    response = api.generic("POST", "/api/threads", body, content_type="application/json")

    assert response.status_code == 200, response.content
    assert response.json()["metadata"] == {"emoji": "\U0001f600", "path": "C:\\ud800"}


@pytest.mark.parametrize(
    "query",
    [
        "offset=100000000000000000000000",
        "offset=18446744073709551616",
        "offset=1e23",
        "limit=%C2%B2",
        "offset=%D9%A3",  # ARABIC-INDIC DIGIT THREE: int() takes it, the contract does not
        "limit=+5",
        "limit=5%20",
    ],
)
def test_a_query_integer_beyond_64_bits_or_not_ascii_digits_is_422(api, existing, query):
    response = api.get(f"/api/threads/{existing[0]}/runs?{query}")

    assert response.status_code == 422, response.content
    assert response["Content-Type"].startswith("application/json")


def test_a_values_filter_nested_deep_is_422(api) -> None:
    nested: dict = {"a": 1}
    for _ in range(170):
        nested = {"a": nested}

    response = api.post("/api/threads/search", {"values": nested}, format="json")

    assert response.status_code == 422, response.content[:300]


def test_a_values_filter_at_the_depth_limit_is_answered(api, settings) -> None:
    nested: dict = {"a": 1}
    for _ in range(settings.MAX_JSON_DEPTH - 2):  # the body itself is one level
        nested = {"a": nested}

    response = api.post("/api/threads/search", {"values": nested}, format="json")

    assert response.status_code == 200, response.content[:300]
    assert response.json() == []


@pytest.mark.parametrize("path", ["/api/threads/search", "/api/threads/count"])
@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {f"k{i}": i for i in range(600)}},
        {"values": {"a": {f"k{i}": [i] for i in range(MAX_FILTER_VALUES + 1)}}},
        {"metadata": {f"k{i}": i for i in range(MAX_FILTER_VALUES // 2 + 1)}}
        | {"values": {f"k{i}": {} for i in range(MAX_FILTER_VALUES + 1)}},
    ],
    ids=["600 metadata keys", "101 nested values", "values over"],
)
def test_a_filter_of_too_many_values_is_a_422(api, path, body) -> None:
    """SQLite matched each value in one expression of the whole filter's depth: 600 keys were
    'Expression tree is too large' (a 500)."""
    api.raise_request_exception = False
    response = api.post(path, body, format="json")

    assert response.status_code == 422, response.content[:300]
    assert str(MAX_FILTER_VALUES) in response.content.decode()


@pytest.mark.parametrize("path", ["/api/threads/search", "/api/threads/count"])
def test_filters_at_the_limit_are_answered(api, path) -> None:
    thread = {"metadata": {f"k{i}": i for i in range(MAX_FILTER_VALUES)}}
    assert api.post("/api/threads", thread, format="json").status_code == 200
    body = {**thread, "values": {f"k{i}": i for i in range(MAX_FILTER_VALUES)}}

    response = api.post(path, body, format="json")

    assert response.status_code == 200, response.content[:300]
    assert response.json() in ([], 0)
    matching = api.post(path, thread, format="json").json()
    assert matching == 1 or len(matching) == 1


def test_unknown_fields_are_logged_once_and_remembered_within_a_bound(api, caplog) -> None:
    unknown_fields.size = 50
    try:
        for batch in range(4):
            body = {f"field_{batch}_{n}": n for n in range(100)}
            assert api.post("/api/threads/search", body, format="json").status_code == 200

        assert len(unknown_fields) == 50
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="deerflow_site.api.serializers"):
            for _ in range(2):
                api.post("/api/threads/search", {"a_newer_sdk_field": 1}, format="json")
        assert len([r for r in caplog.records if "a_newer_sdk_field" in r.getMessage()]) == 1
    finally:
        unknown_fields.size = 256


def test_every_integer_field_of_the_code_is_bounded() -> None:
    """Request integers go through BoundedIntegerField (64-bit, ASCII digits); DRF's own
    IntegerField is unbounded and takes Unicode digits: read-only use only."""
    repo = Path(__file__).resolve().parent.parent
    unbounded = [
        f"{path.relative_to(repo)}:{number}"
        for app in ("deerflow_site", "threads", "runs", "feedback")
        for path in (repo / app).rglob("*.py")
        if "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ("serializers.IntegerField(" in line and "read_only=True" not in line)
        or ".isdigit()" in line
    ]
    assert unbounded == []


UNSTORABLE_VALUES = {
    "NaN": "NaN",
    "infinity": "-Infinity",
    "an integer beyond 64 bits": str(2**64),
    "NUL": '"a\\u0000"',
    "a lone surrogate": '"\\ud800"',
    "nesting too deep": '{"a": ' * 65 + "1" + "}" * 65,
}
WRITES_OF_CLIENT_VALUES = [
    ("PATCH", "/api/threads/{t}", '{{"metadata": {{"v": {v}}}}}'),
    ("POST", "/api/threads/{t}/state", '{{"values": {{"v": {v}}}}}'),
    ("POST", "/api/threads/{t}/runs", '{{"assistant_id": "echo", "metadata": {{"v": {v}}}}}'),
    ("POST", "/api/threads/{t}/runs/{r}/feedback", '{{"rating": 1, "comment": {v}}}'),
]


@pytest.mark.parametrize("value", list(UNSTORABLE_VALUES))
@pytest.mark.parametrize(("method", "path", "body"), WRITES_OF_CLIENT_VALUES)
def test_a_value_no_column_can_hold_is_422_wherever_a_client_writes_one(
    api, existing, method, path, body, value
) -> None:
    # What would keep a run from ending if a graph produced it (tests/test_run_finish.py) is
    # refused at the door when a client sends it: metadata, a state update, feedback.
    before = stored()
    thread_before = Thread.objects.values().get(pk=existing[0])
    api.raise_request_exception = False

    path = path.format(t=existing[0], r=existing[1])
    response = api.generic(
        method, path, body.format(v=UNSTORABLE_VALUES[value]), content_type="application/json"
    )

    assert response.status_code == 422, response.content
    assert response.json()["detail"]
    assert stored() == before
    assert Thread.objects.values().get(pk=existing[0]) == thread_before
