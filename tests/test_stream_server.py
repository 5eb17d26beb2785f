"""The daphne server we run (`deerflow_site.server`): its light application input behaves as the
asyncio.Queue daphne would give, its connection walk still reaps finished applications, and what
an application sends leaves at once."""

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from deerflow_site.server import APPLICATION_CHECK_EVERY, ApplicationInput, StreamServer
from scripts.cluster import die_with_parent
from tests.live import REPO_ROOT, _free_port

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
    # It says what to send instead (curl's -d without -H sends a form's media type).
    assert response.json() == {
        "detail": f'Unsupported media type "{content_type}" in request. '
        "Send the body as JSON, with the header Content-Type: application/json."
    }


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


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_every_status_the_api_answers_has_its_reason_phrase(live_api) -> None:
    """twisted's table lacks 422 and 429 among others: their status line read "Unknown
    Status", which clients repeat in their errors (httpx: "Client error '422 Unknown Status'")."""
    invalid = await live_api.post("/threads", json={"thread_id": "not an id"})

    assert invalid.status_code == 422
    assert invalid.reason_phrase == "Unprocessable Entity"


def _chunked(body: bytes, size: int = 65_536) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def _search_request(headers: dict[str, str], framing: bytes, body: bytes) -> bytes:
    return (
        b"POST /api/threads/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        b"Authorization: " + headers["Authorization"].encode() + b"\r\n" + framing + b"\r\n" + body
    )


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "framing, body",
    [
        (b"Content-Length: 100000000000000000000\r\n", b"{}"),
        (b"Content-Length: 2621441\r\n", b"{}"),
        (b"Transfer-Encoding: chunked\r\n", _chunked(b'{"metadata": {"a": "' + b"x" * 3_000_000)),
        (b"Transfer-Encoding: chunked\r\n", _chunked(b"x" * 2_621_441)[:-5]),  # no end yet
    ],
    ids=["declared 10**20", "declared one over", "chunked over", "chunked over, unfinished"],
)
async def test_a_body_over_the_limit_is_a_json_413_at_once(daphne_server, headers, framing, body):
    """A body over DEERFLOW_MAX_BODY_BYTES (2.5 MB) is refused as soon as it is known, a declared
    one before any of it is read, a chunked one (no declared length, which Django's own check
    reads) once it passes the limit; nothing waits for the rest, and the server goes on
    serving. Chunked, the whole body used to be read and handed to the API (a 200 here), and a
    declared 10**20 bytes were waited for."""
    answer = await _raw_exchange(daphne_server.url, _search_request(headers, framing, body))

    head, _, answered = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(answered) == {
        "detail": "The request body is too large.",
        "max_bytes": 2621440,
    }
    async with httpx.AsyncClient(base_url=daphne_server.api_url) as client:
        assert (await client.get("/ok")).status_code == 200


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_chunked_body_within_the_limit_is_answered(daphne_server, headers):
    body = b'{"metadata": {"a": "' + b"x" * 2_000_000 + b'"}, "limit": 1}'
    answer = await _raw_exchange(
        daphne_server.url,
        _search_request(
            headers, b"Transfer-Encoding: chunked\r\nConnection: close\r\n", _chunked(body)
        ),
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


@pytest.mark.parametrize(
    "path, whole",
    [("/answer", b"first"), ("/stream", b"first then the rest"), ("/wait", b"first")],
    ids=["an answer", "a stream's first chunk", "a body's last chunk"],
)
def test_what_the_application_sends_leaves_before_the_callbacks_due_after_it(
    tmp_path, path, whole
) -> None:
    # tests/flush_app.py answers, then holds the server's loop in a callback already due until
    # this test has read the answer: twisted alone writes a response at the loop's next look at
    # its sockets, after that callback, so the read would wait for the hold to end (60 s).
    release = tmp_path / "release"
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deerflow_site.server",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "--announce",
            "listening",
            "tests.flush_app:application",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "FLUSH_TEST_RELEASE": str(release)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        assert process.stdout.readline() == b"listening\n"
        with (
            httpx.Client(trust_env=False, timeout=WAIT) as client,
            client.stream("GET", f"http://127.0.0.1:{port}{path}") as response,
        ):
            chunks = response.iter_raw()
            assert response.status_code == 200
            assert next(chunks) == b"first"  # while the loop is held
            release.touch()
            assert b"".join([b"first", *chunks]) == whole
    finally:
        release.touch()
        process.terminate()
        process.wait(WAIT)
