"""A browser's session through real daphne: admin login, messages, CSRF and the session's API.

Under ASGI the middleware hooks run on the event loop (deerflow_site/middleware.py), except
saving a modified session and messages that reach the session; these tests drive each of them.
"""

import re

import httpx
import pytest

from threads.models import Thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "pw-12345!"


def _csrf_from(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "the page has no CSRF form field"
    return match.group(1)


@pytest.fixture
def browser(daphne_server):
    with httpx.Client(base_url=daphne_server.url, timeout=10) as client:
        yield client


def _log_in(client: httpx.Client, username: str) -> None:
    login = client.get("/admin/login/")
    assert login.status_code == 200
    response = client.post(
        "/admin/login/?next=/admin/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": _csrf_from(login.text),
        },
    )
    assert response.status_code == 302, response.text[:500]
    assert "sessionid" in client.cookies  # the modified session was saved


def test_admin_login_change_with_message_and_logout(browser, make_user, user):
    make_user("staffer", is_staff=True, is_superuser=True)
    thread = Thread.objects.create(thread_id="t-admin-live", owner=user, metadata={"a": 1})
    _log_in(browser, "staffer")
    page = browser.get(f"/admin/threads/thread/{thread.pk}/change/")
    assert page.status_code == 200
    assert "t-admin-live" in page.text
    form = {
        "csrfmiddlewaretoken": _csrf_from(page.text),
        "thread_id": thread.pk,
        "owner": str(user.pk),
        "metadata": '{"a": 2}',
        "status": "idle",
        "config": "{}",
        "values": "null",
        "interrupts": "{}",
        "error": "null",
        "_save": "Save",
    }
    saved = browser.post(f"/admin/threads/thread/{thread.pk}/change/", data=form)
    assert saved.status_code == 302, saved.text[:2000]
    listing = browser.get(saved.headers["location"])
    assert "was changed successfully" in listing.text  # the message survived the redirect
    assert "was changed successfully" not in browser.get("/admin/").text  # and was used up
    thread.refresh_from_db()
    assert thread.metadata == {"a": 2}
    logout = browser.post("/admin/logout/", data={"csrfmiddlewaretoken": _csrf_from(page.text)})
    assert logout.status_code == 200
    assert browser.get("/admin/").status_code == 302  # back to the login page


def test_session_api_needs_csrf_on_the_long_responses_too(daphne_server, browser, make_user):
    make_user("browser", is_staff=True)  # the admin's login page only takes staff
    _log_in(browser, "browser")
    api = daphne_server.api_url.removeprefix(daphne_server.url)
    assert browser.post(f"{api}/threads", json={}).status_code == 403
    refused = browser.post(f"{api}/runs/wait", json={"assistant_id": "echo"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    csrf = {"X-CSRFToken": browser.cookies["csrftoken"]}
    created = browser.post(f"{api}/threads", json={}, headers=csrf)
    assert created.status_code == 200
    thread_id = created.json()["thread_id"]
    waited = browser.post(
        f"{api}/threads/{thread_id}/runs/wait",
        json={"assistant_id": "echo", "input": {"messages": []}},
        headers=csrf,
    )
    assert waited.status_code == 200, waited.text
    assert browser.get(f"{api}/threads/{thread_id}").json()["status"] == "idle"
    malformed = browser.post(
        f"{api}/threads/{thread_id}/runs/wait",
        content=b'{"assistant_id": ',
        headers={**csrf, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422
    assert browser.get(f"{api}/threads/{thread_id}/runs").json()[0]["status"] == "success"
