"""Run webhooks through the live server: delivered from every create endpoint with retries,
refused (422) for URLs the server must not post to, and checked again when sending."""

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from django.test import override_settings
from langgraph_sdk.errors import UnprocessableEntityError

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from runs.webhooks import post_webhook
from tests.fixtures import new_thread, sdk_client, token_for
from tests.live import poll_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HUMAN = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def strict_server(live_server_factory: Any) -> Iterator[Any]:
    """A live server with the production default: no loopback or private webhook targets."""
    server = live_server_factory.start(DEERFLOW_WEBHOOK_ALLOW_PRIVATE="false")
    yield server
    server.stop()


@pytest.fixture
def strict_sdk(strict_server: Any, user: Any, closing: Any) -> Any:
    return sdk_client(closing, strict_server.api_url, token_for(user))


async def _thread_create(sdk: Any, **body: Any) -> None:
    await sdk.runs.create(await new_thread(sdk), "echo", **body)


async def _thread_stream(sdk: Any, **body: Any) -> None:
    async for _ in sdk.runs.stream(await new_thread(sdk), "echo", **body):
        pass


async def _thread_wait(sdk: Any, **body: Any) -> None:
    await sdk.runs.wait(await new_thread(sdk), "echo", **body)


async def _stateless_create(sdk: Any, **body: Any) -> None:
    await sdk.runs.create(None, "echo", **body)


async def _stateless_stream(sdk: Any, **body: Any) -> None:
    async for _ in sdk.runs.stream(None, "echo", **body):
        pass


async def _stateless_wait(sdk: Any, **body: Any) -> None:
    await sdk.runs.wait(None, "echo", **body)


async def _batch(sdk: Any, **body: Any) -> None:
    await sdk.runs.create_batch([{"assistant_id": "echo", **body}])


CREATE_ENDPOINTS: dict[str, Callable[..., Awaitable[None]]] = {
    "POST /threads/{t}/runs": _thread_create,
    "POST /threads/{t}/runs/stream": _thread_stream,
    "POST /threads/{t}/runs/wait": _thread_wait,
    "POST /runs": _stateless_create,
    "POST /runs/stream": _stateless_stream,
    "POST /runs/wait": _stateless_wait,
    "POST /runs/batch": _batch,
}


async def _recorded_webhook(run_id: str) -> Run:
    """The run once its webhook's outcome is recorded."""

    async def recorded() -> Run | None:
        run = await Run.objects.aget(pk=run_id)
        return run if run.webhook_status else None

    return await poll_until(recorded, "the webhook's outcome to be recorded")


# --- Delivery -------------------------------------------------------------------------------


async def test_webhook_gets_the_finished_run_after_a_failed_first_attempt(sdk, webhook_receiver):
    webhook_receiver.statuses = [503, 204]
    thread_id = await new_thread(sdk)

    run = await sdk.runs.create(thread_id, "echo", input=HUMAN, webhook=webhook_receiver.url())

    first, second = await call_sync(webhook_receiver.wait_for, 2, on=Executor.BLOCKING)
    assert webhook_receiver.answered == [503, 204]
    assert first == second
    assert second["run_id"] == run["run_id"] and second["thread_id"] == thread_id
    assert second["status"] == "success"
    assert second["values"]["messages"][-1]["content"] == "echo: hello"
    assert second["error"] is None
    assert second["run_started_at"] <= second["run_ended_at"]
    assert second["kwargs"]["webhook"] == webhook_receiver.url()
    stored = await _recorded_webhook(run["run_id"])
    assert stored.webhook_status == Run.WebhookStatus.DELIVERED
    assert "2 attempt" in stored.webhook_detail


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS)
async def test_every_create_endpoint_posts_its_webhook(sdk, webhook_receiver, endpoint):
    await CREATE_ENDPOINTS[endpoint](sdk, input=HUMAN, webhook=webhook_receiver.url())

    [payload] = await call_sync(webhook_receiver.wait_for, 1, on=Executor.BLOCKING)
    assert payload["status"] == "success"
    assert payload["values"]["messages"][-1]["content"] == "echo: hello"


async def test_failing_webhook_is_recorded_and_leaves_the_run_successful(sdk, webhook_receiver):
    webhook_receiver.statuses = [404]
    thread_id = await new_thread(sdk)

    run = await sdk.runs.create(thread_id, "echo", input=HUMAN, webhook=webhook_receiver.url())

    stored = await _recorded_webhook(run["run_id"])
    assert stored.status == Run.Status.SUCCESS
    assert stored.webhook_status == Run.WebhookStatus.FAILED
    assert "answered 404" in stored.webhook_detail
    assert (await sdk.runs.get(thread_id, run["run_id"]))["status"] == "success"


async def test_sending_refuses_a_name_that_now_resolves_to_loopback(webhook_receiver):
    # Admission checked the name; at send time it resolves to loopback (DNS rebinding).
    with override_settings(WEBHOOK_ALLOW_PRIVATE=False):
        delivery = await post_webhook(url=webhook_receiver.url("localhost"), payload={"a": 1})

    assert not delivery.delivered
    assert delivery.attempts == 1 and delivery.detail.startswith("refused")
    assert webhook_receiver.received == []


# --- Refusals -------------------------------------------------------------------------------


REFUSED_URLS = [
    "http://10.1.2.3/hook",  # private
    "http://192.168.0.10/hook",
    "http://100.64.0.1/hook",  # shared address space (carrier-grade NAT)
    "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
    "http://[fe80::1]/hook",
    "http://127.0.0.1:9/hook",  # loopback
    "http://[::1]:9/hook",
    "http://[::ffff:127.0.0.1]:9/hook",
    "http://localhost:9/hook",  # a name resolving to loopback
    "http://2130706433:9/hook",  # 127.0.0.1 as one number
    "http://0.0.0.0:9/hook",  # unspecified
    "http://224.0.0.1/hook",  # multicast
    "http://user:secret@93.184.216.34/hook",  # credentials
    "http://token@93.184.216.34/hook",
    "ftp://93.184.216.34/hook",  # not http(s)
    "file:///etc/passwd",
    "javascript:alert(1)",
    "/relative/hook",
    "http:///no-host",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_webhook_to_a_forbidden_target_is_422_naming_it(strict_sdk, url):
    thread_id = await new_thread(strict_sdk)

    with pytest.raises(UnprocessableEntityError) as refused:
        await strict_sdk.runs.create(thread_id, "echo", input=HUMAN, webhook=url)

    assert "webhook" in refused.value.response.json()["detail"]
    assert not await Run.objects.filter(thread_id=thread_id).aexists()


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS)
async def test_every_create_endpoint_refuses_a_link_local_webhook(strict_sdk, endpoint):
    # runs.wait raises httpx's own error, the other methods the SDK's subclass of it.
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await CREATE_ENDPOINTS[endpoint](
            strict_sdk, input=HUMAN, webhook="http://169.254.169.254/latest/meta-data/"
        )

    assert refused.value.response.status_code == 422
    assert "webhook" in str(refused.value.response.json()["detail"])
    assert not await Run.objects.aexists()


async def test_allowing_private_targets_still_refuses_link_local(sdk):
    with pytest.raises(UnprocessableEntityError):
        await _thread_create(sdk, input=HUMAN, webhook="http://169.254.169.254/meta-data/")
