"""The runs API through Django's test client: admission rules and every 4xx path of the contract.

No worker runs here, so runs stay where admission left them (pending, or flagged for cancel).
"""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from runs.create_serializers import CONFIG_KEY_CHECKS
from runs.engine.executor import CONFIG_KEYS
from runs.engine.registry import assistant_id_for
from runs.models import Run
from tests.fixtures import client_for
from threads.models import Thread

pytestmark = pytest.mark.django_db


def create_thread(api, **body):
    response = api.post("/api/threads", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["thread_id"]


def create_run(api, thread_id, expect=200, **body):
    body.setdefault("assistant_id", "echo")
    response = api.post(f"/api/threads/{thread_id}/runs", body, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def set_status(run_id, status, **fields):
    Run.objects.filter(pk=run_id).update(status=status, **fields)


# --- create -----------------------------------------------------------------------------------


def test_create_returns_a_pending_run_with_content_location(api):
    thread_id = create_thread(api)
    response = api.post(
        f"/api/threads/{thread_id}/runs",
        {"assistant_id": "echo", "input": {"messages": []}},
        format="json",
    )
    assert response.status_code == 200, response.content
    run = response.json()
    assert run["status"] == "pending"
    assert run["thread_id"] == thread_id
    assert run["assistant_id"] == str(assistant_id_for("echo"))
    assert run["multitask_strategy"] == "reject"
    assert run["kwargs"]["input"] == {"messages": []}
    assert run["kwargs"]["stream_mode"] == ["values"]
    assert {"input_tokens", "output_tokens", "total_tokens", "created_at"} <= run.keys()
    assert response["Content-Location"] == f"/api/threads/{thread_id}/runs/{run['run_id']}"


def test_create_marks_the_thread_busy_and_stamps_graph_and_assistant(api):
    thread_id = create_thread(api)
    create_run(api, thread_id)
    thread = Thread.objects.get(pk=thread_id)
    assert thread.status == "busy"
    assert thread.metadata["graph_id"] == "echo"
    assert thread.metadata["assistant_id"] == str(assistant_id_for("echo"))


def test_assistant_may_be_named_by_its_uuid(api):
    thread_id = create_thread(api)
    run = create_run(api, thread_id, assistant_id=str(assistant_id_for("echo")))
    assert Run.objects.get(pk=run["run_id"]).graph_id == "echo"


def test_unknown_graph_name_is_422_and_creates_nothing(api):
    thread_id = create_thread(api)
    create_run(api, thread_id, expect=422, assistant_id="no-such-graph")
    assert not Run.objects.exists()
    assert Thread.objects.get(pk=thread_id).status == "idle"


def test_unknown_assistant_id_is_404_and_creates_nothing(api):
    thread_id = create_thread(api)
    create_run(api, thread_id, expect=404, assistant_id=str(uuid.uuid4()))
    assert not Run.objects.exists()
    assert Thread.objects.get(pk=thread_id).status == "idle"


def test_missing_assistant_on_a_thread_without_graph_is_422(api):
    thread_id = create_thread(api)
    response = api.post(f"/api/threads/{thread_id}/runs", {}, format="json")
    assert response.status_code == 422
    assert "assistant_id" in response.json()["detail"]


def test_missing_assistant_reuses_the_threads_last_one(api):
    thread_id = create_thread(api)
    first = create_run(api, thread_id)
    set_status(first["run_id"], "success")
    response = api.post(f"/api/threads/{thread_id}/runs", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["assistant_id"] == str(assistant_id_for("echo"))


def test_if_not_exists_create_makes_a_thread_owned_by_the_caller(api, user):
    create_run(api, "brand-new-thread")
    assert Thread.objects.get(pk="brand-new-thread").owner == user


def test_if_not_exists_reject_on_unknown_thread_is_404(api):
    create_run(api, "missing-thread", expect=404, if_not_exists="reject")
    assert not Thread.objects.filter(pk="missing-thread").exists()


def test_unknown_assistant_with_if_not_exists_create_leaves_no_thread(api):
    create_run(api, "never-created", expect=422, assistant_id="nope")
    assert not Thread.objects.filter(pk="never-created").exists()


def test_another_users_thread_is_404_even_with_if_not_exists_create(api, other_api):
    theirs = create_thread(other_api)
    create_run(api, theirs, expect=404)
    assert not Run.objects.exists()


def test_metadata_owner_and_user_ids_are_stripped(api):
    thread_id = create_thread(api)
    run = create_run(api, thread_id, metadata={"owner_id": "x", "user_id": "y", "keep": 1})
    assert run["metadata"] == {"keep": 1}


def test_metadata_auth_token_is_422(api):
    thread_id = create_thread(api)
    response = create_run(api, thread_id, expect=422, metadata={"auth_token": "secret"})
    assert "metadata" in response["detail"]


def test_configurable_keys_starting_with_dunder_are_dropped(api):
    thread_id = create_thread(api)
    run = create_run(api, thread_id, config={"configurable": {"__pregel_x": 1, "model": "m"}})
    stored = Run.objects.get(pk=run["run_id"]).kwargs["config"]
    assert stored == {"configurable": {"model": "m"}}


def test_secrets_in_config_and_context_are_redacted_in_responses_only(api):
    thread_id = create_thread(api)
    run = create_run(
        api,
        thread_id,
        config={"configurable": {"openai_api_key": "sk-1", "model": "m"}},
        context={"Authorization": "Bearer x", "nested": {"db_password": "pw"}},
    )
    assert run["kwargs"]["config"]["configurable"] == {"openai_api_key": "***", "model": "m"}
    assert run["kwargs"]["context"] == {"Authorization": "***", "nested": {"db_password": "***"}}
    stored = Run.objects.get(pk=run["run_id"]).kwargs
    assert stored["config"]["configurable"]["openai_api_key"] == "sk-1"


@pytest.mark.parametrize(
    ("body", "durability"),
    [
        ({"checkpoint_during": False}, "exit"),
        ({"checkpoint_during": True}, "async"),
        ({}, None),
    ],
)
def test_checkpoint_during_is_the_older_spelling_of_durability(api, body, durability):
    thread_id = create_thread(api)
    run = create_run(api, thread_id, **body)
    assert run["kwargs"]["durability"] == durability


def test_durability_with_checkpoint_during_is_422(api):
    thread_id = create_thread(api)
    response = api.post(
        f"/api/threads/{thread_id}/runs",
        {"assistant_id": "echo", "durability": "sync", "checkpoint_during": False},
        format="json",
    )
    assert response.status_code == 422
    assert "checkpoint_during" in response.json()["detail"]
    assert not Run.objects.exists()


def test_every_honoured_field_is_stored_for_the_executor(api):
    thread_id = create_thread(api)
    run = create_run(
        api,
        thread_id,
        command={"resume": "yes"},
        stream_mode=["updates", "messages-tuple"],
        stream_subgraphs=True,
        stream_resumable=True,
        interrupt_before="*",
        interrupt_after=["node"],
        feedback_keys=["accuracy"],
        durability="sync",
        strict_resume=True,
        on_disconnect="continue",
        multitask_strategy="enqueue",
    )
    kwargs = Run.objects.get(pk=run["run_id"]).kwargs
    assert kwargs["command"] == {"resume": "yes"}
    assert kwargs["stream_mode"] == ["updates", "messages-tuple"]
    assert kwargs["subgraphs"] is True
    assert kwargs["resumable"] is True
    assert kwargs["interrupt_before"] == "*"
    assert kwargs["interrupt_after"] == ["node"]
    assert kwargs["feedback_keys"] == ["accuracy"]
    assert kwargs["durability"] == "sync"
    assert kwargs["strict_resume"] is True
    stored = Run.objects.get(pk=run["run_id"])
    assert (stored.resumable, stored.on_disconnect, stored.multitask_strategy) == (
        True,
        "continue",
        "enqueue",
    )


def test_after_seconds_delays_the_start(api):
    thread_id = create_thread(api)
    before = timezone.now()
    run = create_run(api, thread_id, after_seconds=60)
    run_at = Run.objects.get(pk=run["run_id"]).run_at
    assert before + timedelta(seconds=59) < run_at < timezone.now() + timedelta(seconds=61)


#: A wrong value for each RunnableConfig key a client may set.
WRONG_CONFIG = {
    "configurable": [],
    "metadata": "x",
    "tags": "x",
    "run_name": 5,
    "recursion_limit": 0,
    "max_concurrency": -1,
}


def test_every_config_key_the_graph_gets_is_checked() -> None:
    assert set(WRONG_CONFIG) == set(CONFIG_KEY_CHECKS)
    assert set(CONFIG_KEYS) <= set(CONFIG_KEY_CHECKS)


@pytest.mark.parametrize(
    "config",
    [
        *({key: value} for key, value in WRONG_CONFIG.items()),
        {"max_concurrency": 0},
        {"max_concurrency": "2"},
        {"max_concurrency": True},
        {"recursion_limit": True},
        {"tags": ["a", 1]},
        {"metadata": ["a"]},
    ],
)
def test_a_config_value_of_the_wrong_type_is_422_naming_the_key(api, config):
    thread_id = create_thread(api)

    response = api.post(
        f"/api/threads/{thread_id}/runs", {"assistant_id": "echo", "config": config}, format="json"
    )

    assert response.status_code == 422, response.content
    assert set(response.json()["detail"]["config"]) == set(config)
    assert not Run.objects.exists()


def test_valid_config_values_are_taken(api):
    thread_id = create_thread(api)
    config = {
        "configurable": {"model": "m"},
        "metadata": {"a": 1},
        "tags": ["t"],
        "run_name": "named",
        "recursion_limit": 5,
        "max_concurrency": 2,
    }
    run = create_run(api, thread_id, config=config)
    assert run["kwargs"]["config"] == config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream_mode", "nonsense"),
        ("stream_mode", ["values", "nonsense"]),
        ("stream_mode", "lifecycle"),
        ("stream_mode", 3),
        ("multitask_strategy", "queue-jump"),
        ("on_disconnect", "explode"),
        ("on_completion", "archive"),
        ("if_not_exists", "maybe"),
        ("durability", "forever"),
        ("checkpoint_during", "no"),
        ("strict_resume", "yes"),
        ("langsmith_tracer", {"project_name": "p"}),
        ("interrupt_before", "node"),
        ("interrupt_after", [1, 2]),
        ("after_seconds", -1),
        ("after_seconds", "soon"),
        ("command", {"jump": 1}),
        ("command", "resume"),
        ("command", {"goto": {"input": 1}}),
        ("command", {"goto": [1]}),
        ("command", {"resume": None}),
        ("command", {"resume": None, "goto": None, "update": None}),
        ("config", {"configurable": []}),
        ("config", {"recursion_limit": 0}),
        ("config", []),
        ("context", "text"),
        ("metadata", ["a"]),
        ("checkpoint", {"checkpoint_id": 5}),
        ("feedback_keys", "accuracy"),
        ("stream_subgraphs", "sometimes"),
        ("webhook", "ftp://example.com/hook"),
        ("webhook", 5),
    ],
)
def test_invalid_create_field_is_422_naming_it(api, field, value):
    thread_id = create_thread(api)
    response = api.post(
        f"/api/threads/{thread_id}/runs", {"assistant_id": "echo", field: value}, format="json"
    )
    assert response.status_code == 422, response.content
    assert field in response.json()["detail"]
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)  # the create views authenticate on their own threads
@pytest.mark.parametrize("suffix", ["", "/stream", "/wait"])
def test_malformed_json_is_422_on_every_create_endpoint(api, suffix):
    thread_id = create_thread(api)
    response = api.post(
        f"/api/threads/{thread_id}/runs{suffix}", "{not json", content_type="application/json"
    )
    assert response.status_code == 422
    assert "detail" in response.json()


@pytest.mark.django_db(transaction=True)  # the create views authenticate on their own threads
@pytest.mark.parametrize("suffix", ["", "/stream", "/wait"])
def test_a_body_that_is_not_an_object_is_422(api, suffix):
    thread_id = create_thread(api)
    response = api.post(f"/api/threads/{thread_id}/runs{suffix}", [1, 2], format="json")
    assert response.status_code == 422


@pytest.mark.django_db(transaction=True)  # the create views authenticate on their own threads
@pytest.mark.parametrize("suffix", ["", "/stream", "/wait"])
def test_bad_thread_id_is_422_on_every_create_endpoint(api, suffix):
    response = api.post(
        f"/api/threads/bad$id/runs{suffix}", {"assistant_id": "echo"}, format="json"
    )
    assert response.status_code == 422


@pytest.mark.django_db(transaction=True)  # the create views authenticate on their own threads
@pytest.mark.parametrize("suffix", ["/stream", "/wait"])
def test_unknown_stream_mode_is_422_before_streaming(api, suffix):
    thread_id = create_thread(api)
    response = api.post(
        f"/api/threads/{thread_id}/runs{suffix}",
        {"assistant_id": "echo", "stream_mode": ["values", "bogus"]},
        format="json",
    )
    assert response.status_code == 422
    assert response["Content-Type"].startswith("application/json")


def test_unauthenticated_create_is_401(anonymous_api):
    response = anonymous_api.post("/api/threads/t/runs", {"assistant_id": "echo"}, format="json")
    assert response.status_code == 401


# --- multitask strategies -----------------------------------------------------------------------


def test_reject_strategy_returns_409_while_thread_busy(api):
    thread_id = create_thread(api)
    create_run(api, thread_id)
    response = create_run(api, thread_id, expect=409, multitask_strategy="reject")
    assert "detail" in response
    assert Run.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # the streaming views use their own connections
@pytest.mark.parametrize("suffix", ["/stream", "/wait"])
def test_reject_strategy_is_409_on_streaming_endpoints_too(api, suffix):
    thread_id = create_thread(api)
    create_run(api, thread_id)
    response = api.post(
        f"/api/threads/{thread_id}/runs{suffix}", {"assistant_id": "echo"}, format="json"
    )
    assert response.status_code == 409
    assert "detail" in response.json()


def test_enqueue_strategy_queues_the_new_run_behind_the_first(api):
    thread_id = create_thread(api)
    first = create_run(api, thread_id)
    second = create_run(api, thread_id, multitask_strategy="enqueue")
    statuses = dict(Run.objects.values_list("run_id", "status"))
    assert statuses == {
        uuid.UUID(first["run_id"]): "pending",
        uuid.UUID(second["run_id"]): "pending",
    }


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
def test_interrupt_and_rollback_end_pending_runs_before_they_start(api, strategy):
    thread_id = create_thread(api)
    first = create_run(api, thread_id)
    second = create_run(api, thread_id, multitask_strategy=strategy)
    old = Run.objects.get(pk=first["run_id"])
    assert old.status == "interrupted"
    assert old.started_at is None
    assert old.rolled_back is (strategy == "rollback")
    assert Run.objects.get(pk=second["run_id"]).status == "pending"
    assert Thread.objects.get(pk=thread_id).status == "busy"


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
def test_interrupt_and_rollback_flag_the_running_run_for_its_worker(api, strategy):
    thread_id = create_thread(api)
    first = create_run(api, thread_id)
    set_status(first["run_id"], "running")
    create_run(api, thread_id, multitask_strategy=strategy)
    old = Run.objects.get(pk=first["run_id"])
    assert (old.status, old.cancel_action) == ("running", strategy)


def test_a_cancelled_pending_resumable_run_stores_its_end(api):
    thread_id = create_thread(api)
    first = create_run(api, thread_id, stream_resumable=True)
    create_run(api, thread_id, multitask_strategy="interrupt")
    events = list(Run.objects.get(pk=first["run_id"]).stream_events.values_list("event", "data"))
    assert events == [("end", "null")]


# --- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_of_another_thread_is_400(api):
    thread_id = create_thread(api)
    response = create_run(
        api,
        thread_id,
        expect=400,
        checkpoint={"thread_id": "other", "checkpoint_id": str(uuid.uuid4())},
    )
    assert "detail" in response


@pytest.mark.django_db(transaction=True)
def test_unknown_checkpoint_id_is_404(api):
    thread_id = create_thread(api)
    create_run(api, thread_id, expect=404, checkpoint_id="1ef00000-0000-6000-8000-000000000000")
    assert not Run.objects.exists()


# --- permissions ------------------------------------------------------------------------------


def test_a_shared_thread_with_view_only_lets_read_runs_but_not_create_or_cancel(
    api, other_api, other_user
):
    thread_id = create_thread(api)
    run = create_run(api, thread_id)
    assign_perm("view_thread", other_user, Thread.objects.get(pk=thread_id))

    assert other_api.get(f"/api/threads/{thread_id}/runs").status_code == 200
    assert other_api.get(f"/api/threads/{thread_id}/runs/{run['run_id']}").status_code == 200
    create_run(other_api, thread_id, expect=403, multitask_strategy="enqueue")
    assert other_api.delete(f"/api/threads/{thread_id}/runs/{run['run_id']}").status_code == 403


def test_a_run_deleting_its_thread_on_completion_needs_the_right_to_delete_the_thread(
    api, other_api, other_user
):
    # Sharing change but not delete: the run would delete the owner's thread when it ends.
    thread_id = create_thread(api)
    thread = Thread.objects.get(pk=thread_id)
    assign_perm("view_thread", other_user, thread)
    assign_perm("change_thread", other_user, thread)

    response = other_api.post(
        f"/api/threads/{thread_id}/runs",
        {"assistant_id": "echo", "on_completion": "delete"},
        format="json",
    )

    assert response.status_code == 403, response.content
    assert response.json() == {"detail": "You may not delete this thread."}
    assert not Run.objects.exists()
    assert Thread.objects.get(pk=thread_id).status == Thread.Status.IDLE
    create_run(other_api, thread_id, on_completion="keep")  # changing it is still theirs
    assign_perm("delete_thread", other_user, thread)
    create_run(other_api, thread_id, on_completion="delete", multitask_strategy="enqueue")
    create_run(api, thread_id, on_completion="delete", multitask_strategy="enqueue")  # the owner


def test_a_user_without_the_runs_create_scope_gets_403(api, user):
    thread_id = create_thread(api)
    user.groups.clear()
    user.user_permissions.clear()
    user = type(user).objects.get(pk=user.pk)  # a fresh permission cache
    create_run(client_for(user), thread_id, expect=403)


# --- list / get / delete / bulk cancel ---------------------------------------------------------


def test_list_is_newest_first_with_pagination_headers_and_status_filter(api):
    thread_id = create_thread(api)
    runs = [create_run(api, thread_id, multitask_strategy="enqueue") for _ in range(3)]
    set_status(runs[0]["run_id"], "success")

    response = api.get(f"/api/threads/{thread_id}/runs", {"limit": 2})
    assert [r["run_id"] for r in response.json()] == [runs[2]["run_id"], runs[1]["run_id"]]
    assert response["X-Pagination-Total"] == "3"
    assert response["X-Pagination-Next"] == "2"
    rest = api.get(f"/api/threads/{thread_id}/runs", {"limit": 2, "offset": 2}).json()
    assert [r["run_id"] for r in rest] == [runs[0]["run_id"]]
    done = api.get(f"/api/threads/{thread_id}/runs", {"status": "success"}).json()
    assert [r["run_id"] for r in done] == [runs[0]["run_id"]]


def test_list_select_keeps_only_the_named_fields(api):
    thread_id = create_thread(api)
    create_run(api, thread_id)
    response = api.get(f"/api/threads/{thread_id}/runs?select=run_id&select=status")
    assert set(response.json()[0]) == {"run_id", "status"}


@pytest.mark.parametrize(
    "query", [{"status": "done"}, {"limit": 0}, {"offset": -1}, {"limit": "x"}, {"select": "nope"}]
)
def test_list_with_bad_query_is_422(api, query):
    thread_id = create_thread(api)
    assert api.get(f"/api/threads/{thread_id}/runs", query).status_code == 422


def test_get_of_a_run_of_another_thread_is_404(api):
    first, second = create_thread(api), create_thread(api)
    run = create_run(api, first)
    assert api.get(f"/api/threads/{second}/runs/{run['run_id']}").status_code == 404
    assert api.get(f"/api/threads/{first}/runs/{run['run_id']}").status_code == 200


def test_bad_run_id_is_422_and_unknown_is_404(api):
    thread_id = create_thread(api)
    assert api.get(f"/api/threads/{thread_id}/runs/not-a-uuid").status_code == 422
    assert api.get(f"/api/threads/{thread_id}/runs/{uuid.uuid4()}").status_code == 404
    assert api.delete(f"/api/threads/{thread_id}/runs/{uuid.uuid4()}").status_code == 404


def test_delete_of_an_active_run_is_409_and_of_a_finished_one_204(api):
    thread_id = create_thread(api)
    run = create_run(api, thread_id)
    url = f"/api/threads/{thread_id}/runs/{run['run_id']}"
    assert api.delete(url).status_code == 409
    set_status(run["run_id"], "success")
    assert api.delete(url).status_code == 204
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)  # the cancel view uses its own connections
def test_cancel_of_a_pending_run_frees_the_thread_and_a_second_cancel_is_202_again(api):
    thread_id = create_thread(api)
    run = create_run(api, thread_id, after_seconds=60)
    url = f"/api/threads/{thread_id}/runs/{run['run_id']}/cancel"
    assert api.post(url).status_code == 202
    assert Run.objects.get(pk=run["run_id"]).status == "interrupted"
    assert Thread.objects.get(pk=thread_id).status == "idle"
    assert api.post(url).status_code == 202
    assert Run.objects.get(pk=run["run_id"]).status == "interrupted"


@pytest.mark.parametrize(
    "body",
    [{}, {"run_ids": [str(uuid.uuid4())]}, {"status": "done"}, {"thread_id": "t", "status": "all"}],
)
def test_bulk_cancel_with_a_bad_body_is_422(api, body):
    assert api.post("/api/runs/cancel", body, format="json").status_code == 422


def test_bulk_cancel_of_unknown_run_ids_is_404(api):
    thread_id = create_thread(api)
    body = {"thread_id": thread_id, "run_ids": [str(uuid.uuid4())]}
    assert api.post("/api/runs/cancel", body, format="json").status_code == 404


def test_bulk_cancel_of_a_threads_pending_runs(api):
    thread_id = create_thread(api)
    run = create_run(api, thread_id)
    response = api.post("/api/runs/cancel?action=rollback", {"thread_id": thread_id}, format="json")
    assert response.status_code == 204
    stored = Run.objects.get(pk=run["run_id"])
    assert (stored.status, stored.rolled_back) == ("interrupted", True)
    assert Thread.objects.get(pk=thread_id).status == "idle"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/threads/t/runs/stream"),
        ("get", "/api/threads/t/runs/wait"),
        ("get", f"/api/threads/t/runs/{uuid.uuid4()}/cancel"),
        ("post", f"/api/threads/t/runs/{uuid.uuid4()}/join"),
        ("delete", f"/api/threads/t/runs/{uuid.uuid4()}/stream"),
        ("post", "/api/threads/t/stream"),
    ],
)
def test_a_method_the_path_does_not_offer_is_a_json_405(api, method, path):
    response = getattr(api, method)(path)
    assert response.status_code == 405
    assert "detail" in response.json()


@pytest.mark.django_db(transaction=True)  # the create views authenticate on their own threads
@pytest.mark.parametrize("path", ["/api/threads", "/api/runs/wait", "/api/runs/stream"])
def test_a_body_over_the_upload_limit_is_a_413_json_error(api, path, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"assistant_id": "echo", "metadata": {"padding": "x" * 2000}}
    response = api.post(path, body, format="json")
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large."}
    assert not Run.objects.exists()
