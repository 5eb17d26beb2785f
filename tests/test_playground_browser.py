"""The playground in headless Chromium on a live daphne (issue 11's done-when for item 10):
tests/js/playground.test.mjs, one of its node tests per test here.

Chromium and Node.js come from tests/node_tools.py: with CI=true their absence fails these tests,
elsewhere it skips them with the reason.
"""

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

SCRIPT = "playground.test.mjs"
PASSWORD = "pw-12345!"  # what make_user gives
LOCAL_MODE = {
    "DEERFLOW_AUTH_MODE": "local",
    "DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION": "true",
    # The server outlives each test's flush of the database, which deletes the local user without
    # the server hearing of it: it must read the user again on every request, not from its cache.
    "DEERFLOW_PERMISSION_CACHE_SECONDS": "0",
}


@pytest.fixture(scope="module")
def local_mode_server(live_server_factory):
    """A server in the embedded default's auth mode: no credentials, as `scripts/serve` runs."""
    server = live_server_factory.start(**LOCAL_MODE)
    yield server
    server.stop()


@pytest.fixture
def run_in_browser(run_browser_tests):
    return lambda server, name, **env: run_browser_tests(SCRIPT, server, name=name, **env)


def test_message_to_agent_shows_streamed_answer_and_tool_call(run_in_browser, local_mode_server):
    run_in_browser(local_mode_server, "a message to agent shows the streamed answer")


def test_stop_cancels_a_slow_run(run_in_browser, local_mode_server):
    run_in_browser(local_mode_server, "Stop cancels a slow run")


def test_reload_mid_run_rejoins_and_shows_the_rest(run_in_browser, local_mode_server):
    run_in_browser(local_mode_server, "after a reload mid-run")


def test_answering_an_interrupt_resumes_the_run(run_in_browser, local_mode_server):
    run_in_browser(local_mode_server, "answering an ask_human interrupt")


def test_reopening_a_thread_shows_its_history(run_in_browser, local_mode_server):
    run_in_browser(local_mode_server, "reopening a thread from the list")


def test_session_user_chats_with_csrf_token(run_in_browser, daphne_server, make_user):
    """Token mode (the suite's default): a Django login session, whose writes need CSRF."""
    user = make_user("playground-staff", is_staff=True)  # the admin's login page takes staff
    run_in_browser(
        daphne_server,
        "session auth: a logged-in user chats",
        DEERFLOW_LOGIN_USERNAME=user.username,
        DEERFLOW_LOGIN_PASSWORD=PASSWORD,
    )
