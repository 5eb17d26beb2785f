"""The daphne server we run (`deerflow_site.server`): its light application input behaves as the
asyncio.Queue daphne would give, and its connection walk still reaps finished applications."""

import asyncio
import json

import httpx
import pytest

from deerflow_site.server import APPLICATION_CHECK_EVERY, ApplicationInput, StreamServer

WAIT = 20.0


async def test_the_application_input_hands_messages_over_in_order() -> None:
    application_input = ApplicationInput()
    application_input.put_nowait({"type": "http.request", "n": 1})
    application_input.put_nowait({"type": "http.request", "n": 2})

    assert [(await application_input.get())["n"] for _ in range(2)] == [1, 2]
    assert application_input.empty()


async def test_a_waiting_receive_gets_the_disconnect() -> None:
    application_input = ApplicationInput()
    receiving = asyncio.create_task(application_input.get())
    await asyncio.sleep(0)  # the receive waits

    application_input.put_nowait({"type": "http.disconnect"})

    assert (await asyncio.wait_for(receiving, WAIT)) == {"type": "http.disconnect"}


async def test_two_waiting_receives_get_one_message_each() -> None:
    application_input = ApplicationInput()
    receiving = [asyncio.create_task(application_input.get()) for _ in range(2)]
    await asyncio.sleep(0)

    application_input.put_nowait({"n": 1})
    application_input.put_nowait({"n": 2})

    got = await asyncio.wait_for(asyncio.gather(*receiving), WAIT)
    assert sorted(message["n"] for message in got) == [1, 2]


async def test_a_woken_receive_cancelled_before_it_runs_hands_the_message_on() -> None:
    application_input = ApplicationInput()
    first = asyncio.create_task(application_input.get())
    second = asyncio.create_task(application_input.get())
    await asyncio.sleep(0)  # both wait

    application_input.put_nowait({"n": 1})  # wakes the first
    first.cancel()  # before it runs

    assert (await asyncio.wait_for(second, WAIT)) == {"n": 1}
    assert application_input.empty() and application_input._getters is None


async def test_an_idle_application_input_holds_no_buffer() -> None:
    application_input = ApplicationInput()
    application_input.put_nowait({"type": "http.request"})
    await application_input.get()

    assert application_input._messages is None and application_input._getters is None


def test_the_connection_walk_reaps_a_finished_application_within_its_period(
    monkeypatch,
) -> None:
    server = StreamServer(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])
    later = []
    monkeypatch.setattr("deerflow_site.server.reactor.callLater", lambda *a: later.append(a))
    loop = asyncio.new_event_loop()
    try:
        finished = loop.create_future()
        finished.set_result(None)
        protocol = object()
        server.connections = {}  # made by run()
        server.connections[protocol] = {"application_instance": finished, "disconnected": 1.0}

        for _ in range(APPLICATION_CHECK_EVERY):
            server.application_checker()

        assert protocol not in server.connections
        assert len(later) == APPLICATION_CHECK_EVERY  # it keeps calling itself every second
    finally:
        loop.close()


# --- The live server: POST bodies reach the application as they were sent --------------------


MALFORMED_MULTIPART = b"not a multipart body"  # twisted's form parsing answered it 400


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data; boundary=x", MALFORMED_MULTIPART),
        ("application/x-www-form-urlencoded", b"a=1&b=2"),
    ],
    ids=["malformed multipart", "form"],
)
async def test_a_form_body_is_the_applications_to_parse(daphne_server, headers, content_type, body):
    """twisted does not parse POST bodies as forms (daphne never reads what it would make of
    them): a malformed multipart body is answered by the API, in JSON, instead of by twisted's
    400 and a closed connection."""
    async with httpx.AsyncClient(base_url=daphne_server.api_url, headers=headers) as client:
        response = await client.post(
            "/threads", content=body, headers={"Content-Type": content_type}
        )
    assert response.status_code == 415
    assert response.json() == {"detail": f'Unsupported media type "{content_type}" in request.'}


async def _raw_exchange(server_url: str, request: bytes) -> bytes:
    """`request` sent as is on a new connection; everything answered until the server closes."""
    host, port = server_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/ok?q=" + b"x" * 17_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/ok HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-Header-%d: 1\r\n" % i for i in range(501))
        + b"\r\n",
        b"GET /api/ok HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"y" * 17_000 + b"\r\n\r\n",
        b"NOT A REQUEST LINE\r\n\r\n",
        b"POST /api/threads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: many\r\n\r\n",
    ],
    ids=["long request line", "too many headers", "long header", "malformed line", "length"],
)
async def test_a_request_twisted_refuses_is_a_json_400(daphne_server, request_bytes):
    """twisted answers what it cannot parse before any application sees it; the answer is the
    API's JSON error, and the server goes on serving."""
    answer = await _raw_exchange(daphne_server.url, request_bytes)

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["detail"].startswith("Malformed or too large request")
    async with httpx.AsyncClient(base_url=daphne_server.api_url) as client:
        assert (await client.get("/ok")).status_code == 200
