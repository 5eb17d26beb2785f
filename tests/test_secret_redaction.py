"""A secret passed in a run's config never leaves the server: not in any stream mode's events, the
stored replay, the journal, the admin's run page, the webhook payload, the API's reads or the
logs."""

import secrets
from typing import Any

import httpx
import pytest
from django.test import Client

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.redaction import Redactor
from runs.create_serializers import STREAM_MODES

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

EVERY_STREAM_MODE = list(STREAM_MODES)


def admin_run_page(make_user: Any, run_id: str) -> Any:
    admin = Client()
    admin.force_login(make_user("root", is_staff=True, is_superuser=True))
    return admin.get(f"/admin/runs/run/{run_id}/change/")


@pytest.fixture
def secret() -> str:
    return "sk-" + secrets.token_hex(16)


async def test_a_config_secret_is_found_nowhere(
    daphne_server: Any, headers: Any, make_user: Any, webhook_receiver: Any, secret: str
) -> None:
    api = daphne_server.api_url
    body = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": "what is 6 * 7?"}]},
        "config": {"configurable": {"api_key": secret, "db_password": secret + "-pw"}},
        "context": {"service_token": secret + "-ctx"},
        "metadata": {"note": "redaction"},
        "stream_mode": EVERY_STREAM_MODE,
        "stream_subgraphs": True,
        "stream_resumable": True,
        "on_disconnect": "continue",
        "webhook": webhook_receiver.url(),
    }
    async with httpx.AsyncClient(headers=headers, trust_env=False, timeout=60) as client:
        thread_id = (await client.post(f"{api}/threads", json={})).json()["thread_id"]
        async with client.stream("POST", f"{api}/threads/{thread_id}/runs/stream", json=body) as r:
            assert r.status_code == 200
            run_id = r.headers["Content-Location"].rsplit("/", 1)[-1]
            live = "".join([chunk async for chunk in r.aiter_text()])
        replay = await client.get(
            f"{api}/threads/{thread_id}/runs/{run_id}/stream",
            headers={"Last-Event-ID": "-1"},
            params={"stream_mode": EVERY_STREAM_MODE},
        )
        reads = [
            await client.get(f"{api}/threads/{thread_id}/runs/{run_id}"),
            await client.get(f"{api}/threads/{thread_id}"),
            await client.get(f"{api}/threads/{thread_id}/state"),
            await client.post(f"{api}/threads/{thread_id}/history", json={}),
            await client.get(f"{api}/threads/{thread_id}/runs/{run_id}/events"),
            await client.get(f"{api}/threads/{thread_id}/messages"),
        ]
    webhook = webhook_receiver.wait_for(1)
    admin_page = await call_sync(admin_run_page, make_user, run_id, on=Executor.THREAD_SENSITIVE)

    assert "event: end" in live and "event: debug" in live and "event: events" in live
    assert "event: end" in replay.text
    assert admin_page.status_code == 200
    assert all(read.status_code == 200 for read in reads), [r.text[:200] for r in reads]
    places = {
        "live stream": live,
        "stored replay": replay.text,
        "API reads and journal": "".join(read.text for read in reads),
        "admin run page": admin_page.content.decode(),
        "webhook payload": str(webhook),
        "server logs": daphne_server.output(),
    }
    leaks = [place for place, text in places.items() if secret in text]
    assert leaks == []


async def test_a_config_secret_in_a_graph_error_is_redacted(
    sdk, daphne_server: Any, secret: str
) -> None:
    thread_id = (await sdk.threads.create())["thread_id"]
    parts = [
        part
        async for part in sdk.runs.stream(
            thread_id,
            "failing",
            input={"message": f"could not connect with {secret}"},
            config={"configurable": {"api_key": secret}},
            stream_mode=["values", "debug"],
        )
    ]
    run = (await sdk.runs.list(thread_id))[0]

    assert run["status"] == "error"
    error = next(part.data for part in parts if part.event == "error")
    assert error["message"] == "could not connect with ***"
    assert "GraphFailure: could not connect with ***" in daphne_server.output()
    assert secret not in daphne_server.output()


def test_the_redactor_replaces_secret_values_in_keys_and_text_but_not_short_ones_inside() -> None:
    redactor = Redactor.for_run(
        {
            "config": {"configurable": {"db": {"password": "hunter22"}, "API_KEY": ["k-123456"]}},
            "context": {"service_token": "abc", "model": "gpt"},
        }
    )

    redacted = redactor.redact(
        {"hunter22": "x hunter22 y", "list": ["k-123456", 1, None], "s": "abcdef", "t": "abc"}
    )

    assert redacted == {
        "***": "x *** y",
        "list": ["***", 1, None],
        "s": "abcdef",  # a secret this short only where a whole string equals it
        "t": "***",
    }
    assert not Redactor.for_run({"config": {"configurable": {"model": "gpt"}}})
