"""Limits at admission, as settings: active runs per user (429 naming the limit), batch size,
recursion_limit and after_seconds (422 naming the field); a refused request stores nothing."""

import pytest
from django.test import override_settings

from runs.models import Run
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads

ECHO = {"assistant_id": "echo", "if_not_exists": "create"}


def stored() -> tuple[int, int]:
    return Thread.objects.count(), Run.objects.count()


@override_settings(MAX_ACTIVE_RUNS_PER_USER=2)
@pytest.mark.parametrize("suffix", ["", "/stream", "/wait"])
def test_a_run_over_the_active_runs_limit_is_429_naming_it(api, other_api, suffix) -> None:
    for n in range(2):
        assert api.post(f"/api/threads/t-{n}/runs", ECHO, format="json").status_code == 200
    before = stored()

    response = api.post(f"/api/threads/t-new/runs{suffix}", ECHO, format="json")

    assert response.status_code == 429, response
    assert response["Content-Type"].startswith("application/json")
    assert "DEERFLOW_MAX_ACTIVE_RUNS_PER_USER" in response.json()["detail"]
    assert stored() == before
    assert other_api.post("/api/threads/t-theirs/runs", ECHO, format="json").status_code == 200


@override_settings(MAX_ACTIVE_RUNS_PER_USER=1)
def test_the_active_runs_limit_frees_up_when_a_run_is_cancelled(api) -> None:
    first = api.post("/api/threads/t-a/runs", ECHO, format="json").json()
    assert api.post("/api/threads/t-b/runs", ECHO, format="json").status_code == 429

    cancel = api.post(f"/api/threads/t-a/runs/{first['run_id']}/cancel")

    assert cancel.status_code == 202
    assert api.post("/api/threads/t-b/runs", ECHO, format="json").status_code == 200


@override_settings(MAX_ACTIVE_RUNS_PER_USER=3)
def test_a_batch_that_would_pass_the_active_runs_limit_is_429_and_admits_none(api) -> None:
    response = api.post("/api/runs/batch", [{"assistant_id": "echo"}] * 4, format="json")

    assert response.status_code == 429, response.content
    assert stored() == (0, 0)


@override_settings(MAX_BATCH_SIZE=5)
def test_a_batch_over_the_size_limit_is_422_naming_it(api) -> None:
    response = api.post("/api/runs/batch", [{"assistant_id": "echo"}] * 6, format="json")

    assert response.status_code == 422, response.content
    assert "DEERFLOW_MAX_BATCH_SIZE" in str(response.json()["detail"])
    assert stored() == (0, 0)


@override_settings(MAX_RECURSION_LIMIT=100, MAX_AFTER_SECONDS=60)
@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("recursion_limit", {"config": {"recursion_limit": 101}}),
        ("after_seconds", {"after_seconds": 61}),
    ],
)
@pytest.mark.parametrize("path", ["/api/threads/t-x/runs", "/api/runs", "/api/runs/stream"])
def test_a_value_over_its_limit_is_422_naming_the_field(api, field, body, path) -> None:
    response = api.post(path, {**ECHO, **body}, format="json")

    assert response.status_code == 422, response
    assert field in response.json()["detail"]
    assert stored() == (0, 0)


@pytest.mark.parametrize("limit", [366 * 24 * 3600.0, 2.5])
def test_a_limit_is_named_as_the_number_it_is(api, limit) -> None:
    with override_settings(MAX_AFTER_SECONDS=limit):
        response = api.post("/api/runs", {**ECHO, "after_seconds": limit + 1}, format="json")

    assert response.status_code == 422, response
    number = f"{limit:.0f}" if limit.is_integer() else str(limit)  # 31622400, not 3.16224e+07
    message = f"Limit exceeded: at most {number} (DEERFLOW_MAX_AFTER_SECONDS)."
    assert response.json()["detail"] == {"after_seconds": [message]}


@override_settings(MAX_RECURSION_LIMIT=100)
def test_a_batch_names_the_run_over_a_limit(api) -> None:
    runs = [{"assistant_id": "echo"}, {"assistant_id": "echo", "config": {"recursion_limit": 500}}]

    response = api.post("/api/runs/batch", runs, format="json")

    assert response.status_code == 422, response.content
    assert "recursion_limit" in str(response.json()["detail"]["1"])
    assert stored() == (0, 0)
