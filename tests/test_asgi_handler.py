"""The ASGI handler's request cycle (`deerflow_site.asgi.RunServerHandler`), driven with ASGI
messages: a client that leaves cancels the view, and only then; an answer is sent whole; the
handler's task ends as it began (not left cancelled), and a cancellation from outside still
propagates."""

import asyncio
import json
import threading
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import get_script_prefix, path, reverse
from django.views.decorators.csrf import csrf_exempt

from deerflow_site.asgi import django_application
from deerflow_site.bridge import call_async
from deerflow_site.streaming import BytesStreamingResponse, LastChunk

#: What the views of this module saw, by name.
seen: dict[str, Any] = {}


async def answers(request):
    return JsonResponse({"ok": True})


async def waits_forever(request):
    seen["view started"].set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        seen["view cancelled"] = True
        raise
    return HttpResponse("never")  # pragma: no cover


async def swallows_cancellation(request):
    seen["view started"].set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        pass  # a view may answer anyway
    return HttpResponse("answered after all")


async def streams(request):
    async def body():
        try:
            yield b"first"
            seen["first sent"].set()
            await asyncio.Event().wait()
            yield b"never"  # pragma: no cover
        finally:
            seen["stream closed"] = True

    return StreamingHttpResponse(body(), content_type="text/plain")


@csrf_exempt
async def echoes(request):
    seen["body file"] = type(request._stream).__name__
    return HttpResponse(request.body, content_type="application/octet-stream")


def sync_view(request):
    """A sync view: where it runs and what it sees of the request's context."""

    async def the_loop():
        return asyncio.get_running_loop()

    seen["sync view"] = {
        "thread": threading.current_thread().name,
        "script prefix": get_script_prefix(),
        "reversed": reverse("sync-view"),
        "loop": call_async(the_loop),
    }
    if request.GET.get("fail"):
        raise RuntimeError("a bug in a sync view")
    return HttpResponse("sync")


urlpatterns = [
    path("sync-view", sync_view, name="sync-view"),
    path("echoes", echoes),
    path("answers", answers),
    path("waits-forever", waits_forever),
    path("swallows-cancellation", swallows_cancellation),
    path("streams", streams),
]


class Client:
    """One connection's ASGI side: the request's body, then what the test puts in."""

    def __init__(self, *body: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in body or ({"type": "http.request", "body": b"", "more_body": False},):
            self.inbox.put_nowait(message)
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def scope(path_: str, method: str = "GET", **more: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_,
        "raw_path": path_.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    } | more


async def handle(client: Client, path_: str, method: str = "GET") -> None:
    """The handler in a task of its own, as daphne runs an application; the task must end
    without a pending cancellation."""

    async def application() -> int:
        await django_application(scope(path_, method), client.receive, client.send)
        return asyncio.current_task().cancelling()

    assert await asyncio.create_task(application()) == 0


@pytest.fixture(autouse=True)
def this_modules_urls():
    seen.clear()
    seen["view started"] = asyncio.Event()
    seen["first sent"] = asyncio.Event()
    with override_settings(ROOT_URLCONF=__name__):
        yield


@pytest.mark.asyncio
async def test_an_answer_is_sent_whole_and_the_client_staying_changes_nothing():
    client = Client()
    await handle(client, "/answers")
    assert client.sent[0]["status"] == 200
    assert json.loads(client.body()) == {"ok": True}
    assert client.sent[-1].get("more_body", False) is False


@pytest.mark.asyncio
async def test_a_disconnect_after_the_answer_is_no_error(caplog):
    client = Client()
    client.inbox.put_nowait({"type": "http.disconnect"})  # already waiting when the view runs
    await handle(client, "/answers")
    assert client.sent[0]["status"] == 200
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.asyncio
async def test_a_client_that_leaves_cancels_the_view_and_nothing_is_sent():
    client = Client()
    handling = asyncio.create_task(handle(client, "/waits-forever"))
    await seen["view started"].wait()
    client.inbox.put_nowait({"type": "http.disconnect"})
    await handling  # ends normally, not cancelled
    assert seen.get("view cancelled") is True
    assert client.sent == []


@pytest.mark.asyncio
async def test_a_client_that_leaves_during_a_stream_closes_it():
    client = Client()
    handling = asyncio.create_task(handle(client, "/streams"))
    await seen["first sent"].wait()
    client.inbox.put_nowait({"type": "http.disconnect"})
    await handling
    assert seen.get("stream closed") is True
    assert client.sent[0]["status"] == 200
    assert client.body() == b"first"


@pytest.mark.asyncio
async def test_an_unexpected_message_after_the_body_fails_as_in_django():
    client = Client()
    handling = asyncio.create_task(
        django_application(scope("/waits-forever"), client.receive, client.send)
    )
    await seen["view started"].wait()
    client.inbox.put_nowait({"type": "http.request", "body": b"more"})
    with pytest.raises(AssertionError, match="Invalid ASGI message"):
        await handling
    assert seen.get("view cancelled") is True


@pytest.mark.asyncio
async def test_a_cancellation_from_outside_propagates():
    client = Client()
    handling = asyncio.create_task(
        django_application(scope("/waits-forever"), client.receive, client.send)
    )
    await seen["view started"].wait()
    handling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handling
    assert seen.get("view cancelled") is True


def part(body: bytes, *, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


@pytest.mark.asyncio
async def test_a_body_in_one_message_is_read_from_memory():
    client = Client(part(b'{"a": 1}', more=False))
    await handle(client, "/echoes", "POST")
    assert client.body() == b'{"a": 1}'
    assert seen["body file"] == "BytesIO"


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [10, 5000], ids=["small", "past the memory limit"])
async def test_a_body_in_several_messages_is_read_whole(size):
    body = bytes(range(256)) * (size // 256 + 1)
    client = Client(part(body[:5], more=True), part(b"", more=True), part(body[5:], more=False))
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=1000):  # a file on disk past it
        await handle(client, "/echoes", "POST")
    assert client.body() == body
    assert seen["body file"] == "SpooledTemporaryFile"


@pytest.mark.asyncio
@pytest.mark.parametrize("first", [True, False], ids=["before the body", "within the body"])
async def test_a_client_that_leaves_while_sending_its_body_gets_nothing(first):
    messages = [{"type": "http.disconnect"}]
    if not first:
        messages.insert(0, part(b"{", more=True))
    client = Client(*messages)
    await handle(client, "/echoes", "POST")
    assert client.sent == []
    assert "body file" not in seen


@pytest.mark.asyncio
async def test_a_sync_view_runs_on_a_request_thread_with_the_requests_context():
    client = Client()
    await django_application(
        scope("/mounted/sync-view", root_path="/mounted"), client.receive, client.send
    )
    assert client.sent[0]["status"] == 200
    assert client.body() == b"sync"
    view = seen["sync view"]
    assert view["thread"].startswith("request")
    # What the handler set on the loop (asgiref Locals) is the view's on its thread.
    assert view["script prefix"] == "/mounted/"
    assert view["reversed"] == "/mounted/sync-view"
    assert view["loop"] is asyncio.get_running_loop()  # call_async reaches the request's loop


@pytest.mark.asyncio
async def test_a_sync_view_that_fails_is_a_500_as_before():
    client = Client()
    query = {"query_string": b"fail=1"}
    await django_application(scope("/sync-view", **query), client.receive, client.send)
    assert client.sent[0]["status"] == 500


@pytest.mark.asyncio
async def test_a_view_that_swallows_the_cancellation_leaves_none_pending():
    client = Client()
    handling = asyncio.create_task(handle(client, "/swallows-cancellation"))
    await seen["view started"].wait()
    client.inbox.put_nowait({"type": "http.disconnect"})
    await handling  # `handle` checks that the task ends with no cancellation pending
    assert client.body() == b"answered after all"  # sent, as Django sends it, to a gone client


def responses_to_compare() -> list[Any]:
    """Responses of every kind the handler sends, made afresh for each send."""

    async def async_parts():
        yield b"one"
        yield "two"  # Django makes bytes of it
        yield b""
        yield b"x" * (ASGIHandler.chunk_size + 1)

    with_cookie = JsonResponse({"ok": "é"}, status=201, headers={"Location": "/threads/1"})
    with_cookie.set_cookie("session", "v", httponly=True)
    return [
        with_cookie,
        HttpResponse(b"", status=204),
        HttpResponse(b"y" * (2 * ASGIHandler.chunk_size + 5)),
        HttpResponse("café", headers={"X-Name": "naïve"}),
        StreamingHttpResponse(async_parts(), content_type="text/plain"),
        StreamingHttpResponse(iter([b"sync", b"parts"])),
        BytesStreamingResponse(async_parts(), content_type="application/json"),
    ]


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
async def test_a_response_is_sent_in_the_messages_django_sends():
    for ours, djangos in zip(responses_to_compare(), responses_to_compare(), strict=True):
        sent_by_us, sent_by_django = Client(), Client()
        await django_application.send_response(ours, sent_by_us.send)
        await ASGIHandler.send_response(django_application, djangos, sent_by_django.send)
        assert sent_by_us.sent == sent_by_django.sent


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [0, 5, ASGIHandler.chunk_size + 1])
async def test_a_last_chunk_ends_the_response_after_its_stream_is_closed(size):
    events: list[str] = []
    client = Client()

    async def send(message: dict[str, Any]) -> None:
        events.append("sent")
        await client.send(message)

    async def body():
        try:
            yield b""
            yield LastChunk(b"z" * size)
            events.append("asked for more")  # pragma: no cover
            yield b"never"  # pragma: no cover
        finally:
            events.append("stream closed")

    response = BytesStreamingResponse(body(), content_type="application/json")
    await django_application.send_response(response, send)
    parts = client.sent[1:]
    assert [p["more_body"] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert client.body() == b"z" * size
    assert len(parts) == 1 + max(1, -(-size // ASGIHandler.chunk_size))  # no empty closing one
    assert events == ["sent", "sent", "stream closed"] + ["sent"] * (len(parts) - 1)


@pytest.mark.asyncio
async def test_a_stream_that_fails_midway_is_sent_and_raises_as_in_django():
    async def parts():
        yield b"first"
        yield LastChunk(b"plain bytes in Django's own streaming response")
        raise ValueError("the body failed")

    sent_by_us, sent_by_django = Client(), Client()
    with pytest.raises(ValueError, match="the body failed"):
        await django_application.send_response(StreamingHttpResponse(parts()), sent_by_us.send)
    with pytest.raises(ValueError, match="the body failed"):
        await ASGIHandler.send_response(
            django_application, StreamingHttpResponse(parts()), sent_by_django.send
        )
    assert sent_by_us.sent == sent_by_django.sent
    assert [m.get("more_body") for m in sent_by_us.sent[1:]] == [True, True]


@csrf_exempt
async def ends_with_a_last_chunk(request):
    async def body():
        try:
            yield b""
            yield LastChunk('{"done":"é"}'.encode())
        finally:
            seen["closing"].set()
            await seen["may close"].wait()  # a clean-up that awaits
            seen["events"].append("stream closed")

    response = BytesStreamingResponse(body(), content_type="application/json")
    response._resource_closers.append(lambda: seen["events"].append("response closed"))
    return response


urlpatterns.append(path("ends-with-a-last-chunk", ends_with_a_last_chunk))


@pytest.fixture
def request_finished_seen():
    from django.core import signals

    seen["events"] = []
    seen["closing"], seen["may close"] = asyncio.Event(), asyncio.Event()

    def on_finished(**kwargs: Any) -> None:
        seen["events"].append("request_finished")

    signals.request_finished.connect(on_finished)
    yield seen["events"]
    signals.request_finished.disconnect(on_finished)


@pytest.mark.asyncio
async def test_a_last_chunk_response_is_closed_and_finished_once(request_finished_seen):
    seen["may close"].set()
    client = Client()
    await handle(client, "/ends-with-a-last-chunk", "POST")
    assert request_finished_seen == ["stream closed", "response closed", "request_finished"]
    assert client.body() == '{"done":"é"}'.encode()
    assert [m.get("more_body") for m in client.sent[1:]] == [True, False]


@pytest.mark.asyncio
async def test_a_client_leaving_while_the_last_chunks_stream_closes_ends_the_request_once(
    request_finished_seen,
):
    client = Client()
    handling = asyncio.create_task(handle(client, "/ends-with-a-last-chunk", "POST"))
    await seen["closing"].wait()
    client.inbox.put_nowait({"type": "http.disconnect"})
    await handling  # no cancellation left pending
    # Cancelled in its clean-up, as a stream is when its client leaves: closed, then finished.
    assert request_finished_seen[-2:] == ["response closed", "request_finished"]
    assert request_finished_seen.count("request_finished") == 1
    assert client.body() == b""  # the answer is not sent to a client that left
