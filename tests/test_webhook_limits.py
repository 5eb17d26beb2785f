"""A webhook receiver cannot hold the server: an answer's body is never waited for nor kept, an
attempt ends within its timeout whatever the receiver sends, and addresses that embed a refused
IPv4 address are refused too."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import ip_address

import pytest
from django.test import override_settings

from runs.webhooks import address_allowed, post_webhook

#: Long enough for any machine, however loaded; only a hang reaches it.
HANG_GUARD_SECONDS = 60

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a loopback HTTP receiver answering with a handler; yields its URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"

    yield start
    for server in servers:
        server.close()


async def _trickling_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    while True:  # a byte well within httpx's read timeout, for ever
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def _trickling_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    while True:
        writer.write(b"X-Slow: 1\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)


async def _endless_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
    while True:
        writer.write(chunk)
        await writer.drain()


async def _post(url: str, **settings: object) -> object:
    with override_settings(WEBHOOK_ALLOW_PRIVATE=True, **settings):
        return await asyncio.wait_for(
            post_webhook(url=url, payload={"run_id": "r"}), HANG_GUARD_SECONDS
        )


async def test_a_receiver_trickling_its_answers_body_is_delivered_without_waiting_for_it(
    receiver,
):
    delivery = await _post(await receiver(_trickling_body), WEBHOOK_TIMEOUT_SECONDS=2)

    assert delivery.delivered and delivery.attempts == 1


async def test_an_endless_answer_body_is_never_read(receiver):
    delivery = await _post(await receiver(_endless_body), WEBHOOK_TIMEOUT_SECONDS=5)

    assert delivery.delivered and delivery.attempts == 1


async def test_a_receiver_that_never_finishes_its_status_ends_each_attempt_at_the_timeout(
    receiver,
):
    delivery = await _post(
        await receiver(_trickling_headers), WEBHOOK_TIMEOUT_SECONDS=0.5, WEBHOOK_ATTEMPTS=2
    )

    assert not delivery.delivered
    assert delivery.attempts == 2
    assert "no answer within" in delivery.detail


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    ],
)
def test_an_ipv6_address_embedding_a_refused_ipv4_address_is_refused(address):
    assert not address_allowed(ip_address(address), allow_private=False)


def test_a_6to4_address_of_a_public_ipv4_address_is_allowed():
    assert address_allowed(ip_address("2002:5db8:d822::1"), allow_private=False)
