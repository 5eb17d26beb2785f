"""A bounded property-based run of schemathesis against a live daphne server, with a token: no
request the schema allows, nor one it forbids, answers a 5xx, and no response contradicts the
schema (status code, content type, headers, body)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks

from tests.fixtures import token_for
from tests.live import LiveServer

#: Examples per operation and generation mode: about 50 operations, a few hundred requests.
EXAMPLES_PER_OPERATION = 4
REQUEST_TIMEOUT = 30  # seconds; a run that waits on a graph ends well within it
#: What a response may not do: be a 5xx or contradict the schema.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
#: Known defects the fuzzer finds, by operation label ("POST /api/threads"), each with the issue
#: that fixes it; a failure there is reported, not failed. Keep it empty.
KNOWN_DEFECTS: dict[str, str] = {}


def fuzz_schema(server: LiveServer, token: str) -> schemathesis.BaseSchema:
    """The live server's own schema, with `token` on every request."""
    config = schemathesis.Config()
    config.projects.override.update(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token}"},
        request_timeout=REQUEST_TIMEOUT,
    )
    return schemathesis.openapi.from_url(server.api_url + "/openapi.json", config=config)


def generation_modes(operation: schemathesis.APIOperation) -> list[GenerationMode]:
    """Valid requests always; invalid ones where a body or a query can be invalid (a path's
    plain string admits every value, so there is nothing to negate)."""
    if list(operation.body) or list(operation.query):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def fuzz_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    *,
    path_parameters: dict[str, str] | None = None,
    examples: int = EXAMPLES_PER_OPERATION,
    send: Callable[[schemathesis.Case], None] | None = None,
) -> None:
    """Send `examples` generated requests (with these path parameters, if given); raises on
    the first failed check. `send` sends and checks a case instead of `CHECKS`."""
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure reproduces
        phases=[Phase.generate],  # no shrinking: each step would be a request
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        if send is not None:
            send(case)
        else:
            case.call_and_validate(checks=CHECKS)

    run()


def existing_ids(server: LiveServer, token: str) -> dict[str, str]:
    """Path parameters naming things that exist: a thread with a finished `agent` run, that run,
    the thread's latest checkpoint and the `agent` assistant."""
    with httpx.Client(
        base_url=server.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        run = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}}
        assert client.post(f"/threads/{thread_id}/runs/wait", json=run).status_code == 200
        run_id = client.get(f"/threads/{thread_id}/runs").json()[0]["run_id"]
        state = client.get(f"/threads/{thread_id}/state").json()
    return {
        "thread_id": thread_id,
        "run_id": run_id,
        "checkpoint_id": state["checkpoint"]["checkpoint_id"],
        "assistant_id": "agent",
    }


def reads_existing_things(operation: schemathesis.APIOperation) -> bool:
    """Whether to fuzz the operation on things that exist too: it names some, and neither
    deletes them nor streams (a stream of a live thread stays open)."""
    if operation.method.upper() == "DELETE" or "stream" in operation.path:
        return False
    return any(f"{{{name}}}" in operation.path for name in EXISTING)


#: Path parameters fuzzed with ids of things that exist, besides generated ones.
EXISTING = ("thread_id", "run_id", "checkpoint_id", "assistant_id")


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_no_request_gets_a_server_error_or_a_response_the_schema_forbids(daphne_server, user):
    token = token_for(user)
    schema = fuzz_schema(daphne_server, token)
    ids = existing_ids(daphne_server, token)
    failures: dict[str, str] = {}
    known: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:
        runs = [(mode, None) for mode in generation_modes(operation)]
        if reads_existing_things(operation):
            path_ids = {name: ids[name] for name in EXISTING if f"{{{name}}}" in operation.path}
            runs.append((GenerationMode.POSITIVE, path_ids))
        for mode, path_parameters in runs:
            try:
                fuzz_operation(operation, mode, path_parameters=path_parameters)
            except Exception as exc:
                found = known if operation.label in KNOWN_DEFECTS else failures
                on = f" on {path_parameters}" if path_parameters else ""
                found.setdefault(operation.label, f"{mode.value}{on}: {exc}")
    for label, failure in known.items():
        print(f"known defect ({KNOWN_DEFECTS[label]}), {label}: {failure[:2000]}")
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())


def answers_as_missing(missing: dict[str, str]) -> Callable[[schemathesis.Case], None]:
    """A `send` asserting that a case answers a 4xx, never a 403, and the 404 the same request
    gets when its path names `missing` ids instead (things that do not exist) when it gets one
    (a run on a missing thread id creates the thread: another status, the id being free)."""

    def send(case: schemathesis.Case) -> None:
        status = case.call().status_code
        case.path_parameters = {**case.path_parameters, **missing}
        expected = case.call().status_code
        same = status == expected or expected != 404
        assert same and 400 <= status < 500 and status != 403, (
            f"{case.method} {case.formatted_path}: {status} for another user's ids, "
            f"{expected} for ids that do not exist"
        )

    return send


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_another_users_ids_answer_as_ids_that_do_not_exist(daphne_server, user, other_user):
    """Every operation on a thread (its runs, checkpoints, journal, feedback; reads, writes,
    deletes, streams), fuzzed by another user with the owner's ids: each answer is the one a
    thread that does not exist gets, and the owner's thread is left as it was."""
    owner = token_for(user)
    ids = existing_ids(daphne_server, owner)
    schema = fuzz_schema(daphne_server, token_for(other_user))
    missing = {"thread_id": str(uuid.uuid4()), "run_id": str(uuid.uuid4())}
    operations = [result.ok() for result in schema.get_all_operations()]
    on_threads = [op for op in operations if "{thread_id}" in op.path]
    assert len(on_threads) > 20
    failures: dict[str, str] = {}
    for operation in on_threads:
        path_ids = {name: ids[name] for name in EXISTING if f"{{{name}}}" in operation.path}
        try:
            fuzz_operation(
                operation,
                GenerationMode.POSITIVE,
                path_parameters=path_ids,
                send=answers_as_missing(missing),
            )
        except Exception as exc:
            failures.setdefault(operation.label, str(exc)[:2000])
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
    with httpx.Client(
        base_url=daphne_server.api_url, headers={"Authorization": f"Bearer {owner}"}, timeout=60
    ) as client:
        state = client.get(f"/threads/{ids['thread_id']}/state").json()
        assert state["checkpoint"]["checkpoint_id"] == ids["checkpoint_id"]
        assert client.get(f"/threads/{ids['thread_id']}/runs/{ids['run_id']}").status_code == 200
