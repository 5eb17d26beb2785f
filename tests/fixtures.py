"""Fixtures for users, their tokens and API clients (loaded by tests/conftest.py)."""

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

#: The API paths that create runs: on a thread, stateless, and the batch (a list of bodies).
CREATE_PATHS = (
    "/threads/{t}/runs",
    "/threads/{t}/runs/stream",
    "/threads/{t}/runs/wait",
    "/runs",
    "/runs/stream",
    "/runs/wait",
    "/runs/batch",
)


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    """Create a user (in the default API group, as every new user is)."""

    def make(username: str, **extra: Any) -> Any:
        return get_user_model().objects.create_user(
            username=username, password="pw-12345!", **extra
        )

    return make


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user("alice")


@pytest.fixture
def other_user(make_user: Callable[..., Any]) -> Any:
    return make_user("bob")


def token_for(user: Any) -> str:
    """An API token of the user (what `manage.py drf_create_token` creates)."""
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


@pytest.fixture
def api(user: Any) -> APIClient:
    """Django's test client, as `user` with a Bearer token."""
    return client_for(user)


@pytest.fixture
def other_api(other_user: Any) -> APIClient:
    """Django's test client, as `other_user`."""
    return client_for(other_user)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


Closable = TypeVar("Closable")


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[Closable], Closable]]:
    """`closing(client)` returns `client` and `aclose()`s it at the end of the test: every async
    client a test or its fixture opens (the official SDK's, httpx's) goes through it, so that
    none is left with its connections open."""
    clients: list[Any] = []

    def close_at_the_end(client: Closable) -> Closable:
        clients.append(client)
        return client

    yield close_at_the_end
    for client in reversed(clients):
        await client.aclose()


def sdk_client(closing: Callable[[Any], Any], api_url: str, api_key: str, **options: Any) -> Any:
    """The official langgraph_sdk async client on `api_url`, closed at the end of the test."""
    from langgraph_sdk import get_client

    return closing(get_client(url=api_url, api_key=api_key, **options))


@pytest.fixture
def sdk(daphne_server: Any, user: Any, closing: Any) -> Any:
    """The official langgraph_sdk async client on the live server, as `user`."""
    return sdk_client(closing, daphne_server.api_url, token_for(user))


@pytest.fixture
def other_sdk(daphne_server: Any, other_user: Any, closing: Any) -> Any:
    """The official langgraph_sdk async client on the live server, as `other_user`."""
    return sdk_client(closing, daphne_server.api_url, token_for(other_user))


@pytest.fixture
def headers(user: Any) -> dict[str, str]:
    """Credentials of `user` for raw HTTP clients (httpx)."""
    return {"Authorization": f"Bearer {token_for(user)}"}


@pytest.fixture
def live_api(daphne_server: Any, headers: dict[str, str], closing: Any) -> Any:
    """An httpx.AsyncClient on the live server's API base, as `user` (for the endpoints the
    official SDKs have no methods for: the journal, feedback)."""
    return closing(_live_http(daphne_server, headers))


@pytest.fixture
def other_live_api(daphne_server: Any, other_user: Any, closing: Any) -> Any:
    """The same as `live_api`, as `other_user`."""
    headers = {"Authorization": f"Bearer {token_for(other_user)}"}
    return closing(_live_http(daphne_server, headers))


def _live_http(server: Any, headers: dict[str, str]) -> Any:
    import httpx

    return httpx.AsyncClient(base_url=server.api_url, headers=headers, trust_env=False, timeout=30)


async def new_thread(sdk: Any) -> str:
    """A new thread's id, created through the SDK."""
    return (await sdk.threads.create())["thread_id"]


async def streamed_resumable_run(
    sdk: Any, thread_id: str, *, steps: int, stream_mode: str | list[str] = "custom"
) -> list[Any]:
    """The parts of a resumable `slow` run of `steps` ticks (custom events), streamed to its end."""
    stream = sdk.runs.stream(
        thread_id,
        "slow",
        input={"steps": steps, "delay": 0},
        stream_mode=stream_mode,
        stream_resumable=True,
    )
    return [part async for part in stream]


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it.

    It answers each POST with the next status of `statuses` (the last one repeats).
    """

    def __init__(self, statuses: tuple[int, ...] = (204,)) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []
        self.answered: list[int] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._arrived:
                    index = len(receiver.received)
                    status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                    receiver.received.append(json.loads(body))
                    receiver.answered.append(status)
                    receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # serve_forever looks for close()'s shutdown every poll_interval (0.5 s by default: each
        # test using a receiver spent that long in its teardown).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_port

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The first `count` bodies, once they have arrived (fails the test after `timeout`)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout):
                pytest.fail(f"{len(self.received)} of {count} webhook calls arrived")
            return list(self.received[:count])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_receiver() -> Any:
    """A WebhookReceiver answering 204; `webhook_receiver.statuses` may be set before use."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def thread_after_a_run(client: Any, assistant_id: str, graph_input: Any) -> tuple[str, Any]:
    """A new thread after one waited run of `assistant_id` on `graph_input`, through the httpx
    `client` on the API: (its id, its state as `GET /threads/{t}/state` answers it)."""
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    first = client.post(
        f"/threads/{thread_id}/runs/wait", json={"assistant_id": assistant_id, "input": graph_input}
    )
    assert first.status_code == 200, first.text
    return thread_id, client.get(f"/threads/{thread_id}/state").json()


def post_create(client: Any, path: str, thread_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST one run's `body` to a create `path` of CREATE_PATHS (the batch gets `[body]`) on
    `thread_id`, through the httpx `client`: (status, the answer's `detail`, the batch's
    `detail["0"]` being that of its one run)."""
    batch = path.endswith("batch")
    response = client.post(path.format(t=thread_id), json=[body] if batch else body)
    detail = response.json().get("detail") if response.status_code >= 400 else None
    if batch and isinstance(detail, dict):
        detail = detail.get("0", {})
    return response.status_code, detail
