"""Fixtures for users, their tokens and API clients (loaded by tests/conftest.py)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


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


@pytest.fixture
def sdk(daphne_server: Any, user: Any) -> Any:
    """The official langgraph_sdk async client on the live server, as `user`."""
    from langgraph_sdk import get_client

    return get_client(url=daphne_server.api_url, api_key=token_for(user))


@pytest.fixture
def other_sdk(daphne_server: Any, other_user: Any) -> Any:
    """The official langgraph_sdk async client on the live server, as `other_user`."""
    from langgraph_sdk import get_client

    return get_client(url=daphne_server.api_url, api_key=token_for(other_user))


@pytest.fixture
def headers(user: Any) -> dict[str, str]:
    """Credentials of `user` for raw HTTP clients (httpx)."""
    return {"Authorization": f"Bearer {token_for(user)}"}


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
