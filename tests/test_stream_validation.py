"""Every streaming view checks everything before its response starts: a bad request is a 422 (or
404) JSON answer with a status line, never a stream that hangs or ends without one."""

import uuid

import pytest

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads


@pytest.fixture
def thread_with_run(api) -> tuple[str, str]:
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    run = api.post(f"/api/threads/{thread_id}/runs", {"assistant_id": "echo"}, format="json")
    return thread_id, run.json()["run_id"]


def assert_json_error(response, status: int = 422) -> None:
    assert not response.streaming, "the error must come before the stream starts"
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "{run}",
        "{run}:",
        "{run}:abc",
        "{run}:\u00b2",
        "{run}:100000000000000000000000",
        "{run}:-5",
        "{run}\n:1",
        "{other_run}:1",  # a run of another thread
        "{unknown_run}:1",
    ],
)
def test_the_thread_stream_refuses_a_malformed_last_event_id_before_streaming(
    api, thread_with_run, cursor
) -> None:
    thread_id, run_id = thread_with_run
    other = api.post("/api/threads", {}, format="json").json()["thread_id"]
    other_run = api.post(f"/api/threads/{other}/runs", {"assistant_id": "echo"}, format="json")
    header = cursor.format(
        run=run_id, other_run=other_run.json()["run_id"], unknown_run=uuid.uuid4()
    )

    response = api.get(f"/api/threads/{thread_id}/stream", HTTP_LAST_EVENT_ID=header)

    assert_json_error(response)
    assert "Last-Event-ID" in response.json()["detail"]


@pytest.mark.parametrize("cursor", ["abc", "\u00b2", "100000000000000000000000", "1.5", "-2"])
def test_a_run_stream_refuses_a_malformed_last_event_id_before_streaming(
    api, thread_with_run, cursor
) -> None:
    thread_id, run_id = thread_with_run

    join = api.get(f"/api/threads/{thread_id}/runs/{run_id}/stream", HTTP_LAST_EVENT_ID=cursor)

    assert_json_error(join)


@pytest.mark.parametrize(
    "query",
    ["stream_mode=bogus", "stream_mode=%5B%22values%22", "cancel_on_disconnect=maybe"],
)
def test_a_run_stream_refuses_a_bad_query_before_streaming(api, thread_with_run, query) -> None:
    thread_id, run_id = thread_with_run

    response = api.get(f"/api/threads/{thread_id}/runs/{run_id}/stream?{query}")

    assert_json_error(response)


def test_the_thread_stream_refuses_a_bad_stream_mode_before_streaming(api, thread_with_run):
    response = api.get(f"/api/threads/{thread_with_run[0]}/stream?stream_mode=bogus")

    assert_json_error(response)
