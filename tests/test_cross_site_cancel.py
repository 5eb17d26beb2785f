"""No GET changes a run: `action` is honoured on POST only, and `cancel_on_disconnect` on a GET join
made with a session cookie only when the browser says the request is the site's own."""

import re

import httpx
import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from tests.live import poll_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

#: About three seconds unless stopped.
SLOW = {"steps": 30, "delay": 0.1}


@pytest.mark.parametrize("action", ["interrupt", "rollback"])
def test_a_get_with_action_is_422_and_cancels_nothing(api, action) -> None:
    thread_id = api.post("/api/threads", {}, format="json").json()["thread_id"]
    run = api.post(f"/api/threads/{thread_id}/runs", {"assistant_id": "echo"}, format="json")
    run_id = run.json()["run_id"]

    response = api.get(f"/api/threads/{thread_id}/runs/{run_id}/stream?action={action}")

    assert response.status_code == 422, response.content
    assert "action" in response.json()["detail"]
    stored = Run.objects.get(pk=run_id)
    assert stored.status == Run.Status.PENDING and stored.cancel_action == ""


def _session(daphne_server, user) -> httpx.AsyncClient:
    """A browser's session cookie for `user`, from the admin's login (staff may log in there)."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    username = user.username
    with httpx.Client(base_url=daphne_server.url, trust_env=False, timeout=10) as login:
        page = login.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = login.post(
            "/admin/login/?next=/admin/",
            data={"username": username, "password": "pw-12345!", "csrfmiddlewaretoken": token},
        )
        assert answer.status_code == 302, answer.text[:300]
        cookies = dict(login.cookies)
    return httpx.AsyncClient(
        base_url=daphne_server.api_url, cookies=cookies, trust_env=False, timeout=30
    )


async def _status_once_ended(client: httpx.AsyncClient, thread_id: str, run_id: str) -> str:
    async def ended() -> str | None:
        status = (await client.get(f"/threads/{thread_id}/runs/{run_id}")).json()["status"]
        return None if status in ("pending", "running") else status

    return await poll_until(ended, f"run {run_id} to end")


async def _join_then_leave(
    client: httpx.AsyncClient, headers: dict[str, str], *, origin_headers: dict[str, str]
) -> tuple[str, str]:
    """A slow run started with a token, joined through `client` with cancel_on_disconnect=true
    and `origin_headers`, left after its first tick."""
    async with httpx.AsyncClient(
        base_url=str(client.base_url), headers=headers, trust_env=False
    ) as owner:
        thread_id = (await owner.post("/threads", json={})).json()["thread_id"]
        body = {"assistant_id": "slow", "input": SLOW, "stream_mode": "custom"}
        run_id = (await owner.post(f"/threads/{thread_id}/runs", json=body)).json()["run_id"]
    path = f"/threads/{thread_id}/runs/{run_id}/stream"
    params = {"cancel_on_disconnect": "true", "stream_mode": "custom"}
    async with client.stream("GET", path, params=params, headers=origin_headers) as stream:
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if line.startswith("event: custom"):
                break
    return thread_id, run_id


@pytest.mark.parametrize(
    "origin_headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}, {}],
    ids=["sec-fetch-site", "origin", "no-evidence"],
)
async def test_a_cross_site_session_join_does_not_cancel_on_disconnect(
    daphne_server, user, headers, origin_headers
) -> None:
    async with await call_sync(
        _session, daphne_server, user, on=Executor.THREAD_SENSITIVE
    ) as browser:
        thread_id, run_id = await _join_then_leave(browser, headers, origin_headers=origin_headers)

        assert await _status_once_ended(browser, thread_id, run_id) == "success"


@pytest.mark.parametrize(
    "origin_headers", [{"Sec-Fetch-Site": "same-origin"}, {"Origin": "SELF"}], ids=str
)
async def test_a_same_origin_session_join_cancels_on_disconnect(
    daphne_server, user, headers, origin_headers
) -> None:
    if origin_headers.get("Origin") == "SELF":
        origin_headers = {"Origin": daphne_server.url}
    async with await call_sync(
        _session, daphne_server, user, on=Executor.THREAD_SENSITIVE
    ) as browser:
        thread_id, run_id = await _join_then_leave(browser, headers, origin_headers=origin_headers)

        assert await _status_once_ended(browser, thread_id, run_id) == "interrupted"


async def test_a_token_join_cancels_on_disconnect_whatever_its_origin(
    daphne_server, headers
) -> None:
    async with httpx.AsyncClient(
        base_url=daphne_server.api_url, headers=headers, trust_env=False, timeout=30
    ) as client:
        thread_id, run_id = await _join_then_leave(
            client, headers, origin_headers={"Sec-Fetch-Site": "cross-site"}
        )

        assert await _status_once_ended(client, thread_id, run_id) == "interrupted"


async def _shared_slow_run(owner: httpx.AsyncClient, viewer_id: int) -> tuple[str, str]:
    """A slow run on a thread of `owner`'s that the user `viewer_id` may only view."""
    from django.contrib.auth import get_user_model
    from guardian.shortcuts import assign_perm

    from threads.models import Thread

    thread_id = (await owner.post("/threads", json={})).json()["thread_id"]
    body = {"assistant_id": "slow", "input": SLOW, "stream_mode": "custom"}
    run_id = (await owner.post(f"/threads/{thread_id}/runs", json=body)).json()["run_id"]

    def share() -> None:
        viewer = get_user_model().objects.get(pk=viewer_id)
        assign_perm("view_thread", viewer, Thread.objects.get(pk=thread_id))

    await call_sync(share, on=Executor.THREAD_SENSITIVE)
    return thread_id, run_id


async def test_a_viewer_of_a_shared_thread_cannot_cancel_its_run_through_a_join(
    daphne_server, headers, other_user
) -> None:
    """Cancelling is changing the thread's run: `cancel_on_disconnect` and `?action=` on a
    join need what the cancel endpoint needs (the thread's change right), not only the view
    right a join needs (a viewer's join that left cancelled the owner's run)."""
    from tests.fixtures import token_for

    key = await call_sync(token_for, other_user, on=Executor.THREAD_SENSITIVE)
    async with (
        httpx.AsyncClient(base_url=daphne_server.api_url, headers=headers, timeout=30) as owner,
        httpx.AsyncClient(
            base_url=daphne_server.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as viewer,
    ):
        thread_id, run_id = await _shared_slow_run(owner, other_user.pk)
        path = f"/threads/{thread_id}/runs/{run_id}/stream"
        params = {"cancel_on_disconnect": "true", "stream_mode": "custom"}

        async with viewer.stream("GET", path, params=params) as joined:
            if joined.status_code == 200:  # then leave after the first tick
                async for line in joined.aiter_lines():
                    if line.startswith("event: custom"):
                        break
        acted = await viewer.post(path, params={"action": "interrupt"})
        cancelled = await viewer.post(f"/threads/{thread_id}/runs/{run_id}/cancel")

        assert (joined.status_code, acted.status_code, cancelled.status_code) == (403, 403, 403)
        assert await _status_once_ended(owner, thread_id, run_id) == "success"
        # The view right still joins the run's stream.
        assert (await viewer.get(path)).status_code == 200


async def test_a_join_that_cancels_needs_the_runs_cancel_scope(daphne_server, user) -> None:
    from django.contrib.auth.models import Permission

    from tests.fixtures import token_for

    def without_cancel_scope() -> dict[str, str]:
        key = token_for(user)
        user.groups.clear()
        kept = Permission.objects.filter(
            content_type__app_label__in=["threads", "runs"], codename__startswith="api_"
        ).exclude(codename="api_cancel_runs")
        user.user_permissions.set(kept)
        return {"Authorization": f"Bearer {key}"}

    headers = await call_sync(without_cancel_scope, on=Executor.THREAD_SENSITIVE)
    async with httpx.AsyncClient(
        base_url=daphne_server.api_url, headers=headers, timeout=30
    ) as http:
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        body = {"assistant_id": "slow", "input": SLOW, "stream_mode": "custom"}
        run_id = (await http.post(f"/threads/{thread_id}/runs", json=body)).json()["run_id"]
        path = f"/threads/{thread_id}/runs/{run_id}/stream"

        cancelled = await http.post(f"/threads/{thread_id}/runs/{run_id}/cancel")
        acted = await http.post(path, params={"action": "interrupt"})
        joined = await http.get(path, params={"cancel_on_disconnect": "true"})

        assert (cancelled.status_code, acted.status_code, joined.status_code) == (403, 403, 403)
        assert "runs:cancel" in acted.json()["detail"]
        assert await _status_once_ended(http, thread_id, run_id) == "success"
