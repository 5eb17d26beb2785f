"""The official JS client, @langchain/langgraph-sdk (pinned in package-lock.json), against a live
server: tests/js/sdk_client.test.mjs, one of its node tests per test here (issue 11, item 11).
"""

import pytest

from tests.fixtures import token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

SCRIPT = "sdk_client.test.mjs"


@pytest.fixture
def run_sdk_test(run_node_tests, daphne_server, user):
    """Run the node tests of the script whose names match `name` (a regular expression)."""
    env = {"DEERFLOW_API_URL": daphne_server.api_url, "DEERFLOW_API_KEY": token_for(user)}
    return lambda name: run_node_tests(SCRIPT, env=env, name=name)


def test_runs_stream_with_values_and_messages_tuple(run_sdk_test):
    run_sdk_test("^runs.stream with values and messages-tuple$")


def test_join_stream_resumed_after_a_drop_equals_the_full_replay(run_sdk_test):
    run_sdk_test("^joinStream with lastEventId")


def test_resumed_stream_repeats_no_event_id(run_sdk_test):
    run_sdk_test("^a resumed stream repeats no event id$")


def test_get_history_pages_with_before_to_the_first_checkpoint(run_sdk_test):
    run_sdk_test("^getHistory pages with before")


def test_cancel_with_wait_stops_a_running_run(run_sdk_test):
    run_sdk_test("^cancel with wait stops a running run$")


def test_interrupt_then_resume_with_command(run_sdk_test):
    run_sdk_test("^interrupt then resume with command$")


def test_run_stopping_at_interrupt_ends_success(run_sdk_test):
    run_sdk_test(r"^a run that stops at interrupt\(\) ends success$")


def test_every_write_call_is_accepted_with_a_body_or_without(run_sdk_test):
    run_sdk_test("^every write call is accepted, with a body or without$")
