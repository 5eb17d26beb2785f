"""Identifier and name patterns: each is a full match, so a trailing newline (which would end up
in a header) or any other character outside the pattern is a clean 4xx that stores nothing."""

import importlib
import re
import uuid
from pathlib import Path

import pytest

from runs.models import Run
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads

REPO = Path(__file__).resolve().parent.parent
APPS = ("deerflow_site", "threads", "runs", "feedback")
#: A value each check pattern accepts; every `*_PATTERN` of the code must be listed here.
ACCEPTED = {
    "deerflow_site.api.ids.THREAD_ID_PATTERN": "my-thread_1",
    "deerflow_site.api.ids.UUID_PATTERN": "6ba7b821-9dad-11d1-80b4-00c04fd430c8",
    "threads.state_views.METADATA_KEY_PATTERN": "source.step",
    "deerflow_site.api.serializers.INTEGER_PATTERN": "-12345",
    "runs.sse.frames.EVENT_ID_PATTERN": "42",
}
#: Patterns that find text inside a larger text, not checks of a whole value.
SEARCHES = {
    "deerflow_site.api.parsers._STRUCTURE",
    "deerflow_site.api.parsers._NUL_ESCAPE",
    "deerflow_site.api.parsers._SURROGATE_ESCAPE",
    "deerflow_site.dbcompat._SURROGATE",
    "runs.engine.graphs.scripted_model.ARITHMETIC",
    "runs.engine.graphs.scripted_model.TOKEN",
    "runs.engine.serialization._SURROGATE",
}
HOSTILE_SUFFIXES = ["\n", "\r\n", "\x00", " ", "\u00b2", "\u2028"]


def compiled_patterns() -> set[str]:
    """Dotted names of every module-level `NAME = re.compile(...)` in the apps."""
    found = set()
    for app in APPS:
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for name in re.findall(r"^([A-Z_]+) = re\.compile\(", path.read_text(), re.M):
                found.add(f"{module}.{name}")
    return found


def test_every_pattern_of_the_code_is_a_listed_check_or_search() -> None:
    assert compiled_patterns() == ACCEPTED.keys() | SEARCHES


@pytest.mark.parametrize("dotted", sorted(ACCEPTED))
@pytest.mark.parametrize("suffix", HOSTILE_SUFFIXES)
def test_every_check_pattern_refuses_a_value_with_a_trailing_character(dotted, suffix) -> None:
    module, _, name = dotted.rpartition(".")
    pattern = getattr(importlib.import_module(module), name)
    accepted = ACCEPTED[dotted]

    assert pattern.fullmatch(accepted)
    for method in (pattern.match, pattern.search, pattern.fullmatch):
        assert method(accepted + suffix) is None
        assert method(suffix + accepted) is None


# --- through the API ----------------------------------------------------------------------------

BAD_THREAD_IDS = ["abc\n", "abc\r\n", "abc ", "a\x00b", "\uff41\uff42\uff43", "x\u00b2"]
NEWLINE = "%0A"


def nothing_stored() -> bool:
    return not (Thread.objects.exists() or Run.objects.exists())


@pytest.mark.parametrize("bad_id", BAD_THREAD_IDS)
def test_creating_a_thread_with_a_bad_id_is_422_and_stores_nothing(api, bad_id) -> None:
    response = api.post("/api/threads", {"thread_id": bad_id}, format="json")

    assert response.status_code == 422, response.content
    # NUL is refused by the JSON parser already (no database stores it in JSON)
    assert "thread_id" in response.json()["detail"] or "NUL" in response.json()["detail"]
    assert nothing_stored()


@pytest.mark.parametrize("reserved", ["search", "count", "prune"])
def test_a_thread_id_naming_an_endpoint_is_422_and_stores_nothing(api, reserved) -> None:
    """Such a thread was created, then answered 405 at /threads/{id} (the endpoint's), for ever."""
    created = api.post("/api/threads", {"thread_id": reserved}, format="json")
    run = api.post(
        f"/api/threads/{reserved}/runs/wait",
        {"assistant_id": "echo", "input": {"messages": []}, "if_not_exists": "create"},
        format="json",
    )

    for response in (created, run):
        assert response.status_code == 422, response.content
        assert reserved in str(response.json()["detail"]["thread_id"])
    assert nothing_stored()


@pytest.mark.parametrize("bad_id", [str(uuid.uuid4()) + "\n", f"{{{uuid.uuid4()}}}"])
def test_creating_a_thread_with_a_bad_uuid_is_422(api, bad_id) -> None:
    response = api.post("/api/threads", {"thread_id": bad_id}, format="json")

    assert response.status_code == 422, response.content
    assert nothing_stored()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/threads/abc%0A"),
        ("patch", "/api/threads/abc%0A"),
        ("delete", "/api/threads/abc%0A"),
        ("get", "/api/threads/abc%0A/state"),
        ("get", "/api/threads/abc%0A/history"),
        ("post", "/api/threads/abc%0A/copy"),
        ("get", "/api/threads/abc%0A/runs"),
        ("post", "/api/threads/abc%0A/runs"),
        ("post", "/api/threads/abc%0A/runs/stream"),
        ("post", "/api/threads/abc%0A/runs/wait"),
        ("get", "/api/threads/abc%0A/stream"),
    ],
)
def test_a_thread_id_with_a_newline_in_the_path_is_422_and_stores_nothing(
    api, method, path
) -> None:
    body = {"assistant_id": "echo", "if_not_exists": "create", "input": {}}
    response = getattr(api, method)(path, body, format="json")

    assert response.status_code == 422, (path, response.content)
    assert response["Content-Type"].startswith("application/json")
    assert nothing_stored()


def run_paths(thread_id: str, run_id: str) -> list[tuple[str, str]]:
    one_run = f"/api/threads/{thread_id}/runs/{run_id}"
    return [
        ("get", one_run),
        ("delete", one_run),
        ("post", f"{one_run}/cancel"),
        ("get", f"{one_run}/join"),
        ("get", f"{one_run}/stream"),
    ]


@pytest.mark.parametrize("index", range(len(run_paths("t", "r"))))
def test_a_run_id_with_a_newline_in_the_path_is_422(api, index) -> None:
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    method, path = run_paths(thread_id, str(uuid.uuid4()) + NEWLINE)[index]

    response = getattr(api, method)(path, {"rating": 1}, format="json")

    assert response.status_code == 422, (path, response.content)
    assert not Run.objects.exists()


def test_a_checkpoint_id_with_a_newline_is_422(api) -> None:
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    checkpoint_id = str(uuid.uuid4())

    in_path = api.get(f"/api/threads/{thread_id}/state/{checkpoint_id}{NEWLINE}")
    in_body = api.post(
        f"/api/threads/{thread_id}/runs",
        {"assistant_id": "echo", "checkpoint_id": checkpoint_id + "\n"},
        format="json",
    )

    assert in_path.status_code == 422, in_path.content
    assert in_body.status_code == 422, in_body.content
    assert not Run.objects.exists()


def test_bulk_cancel_with_a_run_id_with_a_newline_is_422(api) -> None:
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    response = api.post(
        "/api/runs/cancel",
        {"thread_id": thread_id, "run_ids": [str(uuid.uuid4()) + "\n"]},
        format="json",
    )

    assert response.status_code == 422, response.content


@pytest.mark.parametrize("assistant_id", ["echo\n", "6ba7b821-9dad-11d1-80b4-00c04fd430c8\n"])
def test_an_assistant_id_with_a_newline_is_not_found_and_starts_nothing(api, assistant_id) -> None:
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]

    detail = api.get(f"/api/assistants/{assistant_id.rstrip()}{NEWLINE}")
    run = api.post(f"/api/threads/{thread_id}/runs", {"assistant_id": assistant_id}, format="json")

    assert detail.status_code == 404, detail.content
    assert run.status_code in (404, 422), run.content
    assert not Run.objects.exists()
