"""The server we run: daphne, with a `Server` made for thousands of idle streams.

    python -m deerflow_site.server [daphne's options] deerflow_site.asgi:application

takes daphne's own command line (scripts/serve, bench/run and the live tests start it so).
Two of daphne's per-connection costs are settings of its `Server`, not of the protocol:

- each connection's application input is an `asyncio.Queue` (four deques, about 3 KB, for the
  one request message and the disconnect); here it is `ApplicationInput`, a few hundred bytes
  that hold nothing while idle;
- `application_checker` walks every connection each second to reap finished applications and
  cancel those that outlived their disconnect by `application_close_timeout`; here it walks
  them every `APPLICATION_CHECK_EVERY` seconds. A finished application's connection is reaped that
  much later, and a stuck one is cancelled at most that much later than daphne would.

And one of twisted's per-request costs: its `Request` parses every POST body with a Content-Type
as a form submission, for `request.args`, which daphne never reads (it hands the raw body to the
application, whose own parsers read it): the Content-Type through the `email` package (about 2 %
of a create+wait run's CPU), form fields, a whole multipart body. Requests here are made with
twisted's `parsePOSTFormSubmission=False`; Django parses forms itself, and answers a malformed
one (which twisted answered 400 and disconnected).

A response's first and last body messages leave at once (`flush_now`): twisted buffers a
response's bytes until the loop's next look at its sockets, after every callback already due has
run (on the request path: a run just handed to the worker starting its graph, a run's end
sending `run_ended`), so an answer, a stream's status line and first event waited for work that
did not concern them. Those are written in the application's own step, as asyncio's transports
do; what the socket does not take stays buffered for the loop as before. A stream's other
events are still written at the loop's next look, several in one write when they come together.

A request twisted refuses before any application sees it (a request line and headers over its
16 KB, more than 500 headers, a malformed request line, header or chunk) is answered with a
400 and a closed connection, as twisted answers most of them, with the API's JSON error body
(`BAD_REQUEST`) instead of an empty one; a line over the limit, which twisted answers by
closing the connection alone, gets the same answer.

A request body over the API's limit (`DEERFLOW_MAX_BODY_BYTES`, Django's
DATA_UPLOAD_MAX_MEMORY_SIZE) is answered 413 as soon as it is known, with the API's JSON error,
and the connection closed: twisted keeps a whole body (in a temporary file) before daphne hands
it on, and Django checks the limit against a declared Content-Length only, so a body declared
larger would be waited for (Content-Length: 10**20) and a chunked one read to its end, however
long. A declared length is refused before any of the body is read; a chunked body once what
came in passes the limit.

With `--announce TEXT` (scripts/serve's list of URLs), the text is printed once every endpoint
listens, never before; an endpoint it cannot listen on (the port is taken) is said in one line on
stderr and the process exits 1.

Before serving, the process settles its heap (`deerflow_site.heap`): what the application
loaded is frozen out of the garbage collector's passes, and young passes are rarer.
"""

import asyncio
import json
import sys
from collections import deque
from functools import partial
from http import HTTPStatus
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server, reactor  # daphne installs the asyncio reactor first
from django.core.exceptions import ImproperlyConfigured
from twisted.internet import defer, tcp
from twisted.web import http

from deerflow_site.heap import settle_heap

# twisted's reason phrases lack some the API answers (422, 429, 423, ...): their status line read
# "422 Unknown Status", and clients repeat it (the SDK's httpx error: "Client error '422 Unknown
# Status'"). The standard phrases fill the gaps; twisted's own stay as they are.
for _status in HTTPStatus:
    http.RESPONSES.setdefault(_status.value, _status.phrase.encode())

#: twisted's answer to a request it refuses itself, as a JSON error like the API's others.
BAD_REQUEST_DETAIL = (
    "Malformed or too large request: the request line and headers must be well formed, at most "
    f"{http.HTTPChannel.totalHeadersSize} bytes together, in at most "
    f"{http.HTTPChannel.maxHeaders} headers."
)
_BAD_REQUEST_BODY = json.dumps({"detail": BAD_REQUEST_DETAIL}).encode()
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_BAD_REQUEST_BODY)
) + _BAD_REQUEST_BODY


def _respond_to_bad_request_and_disconnect(channel: http.HTTPChannel) -> None:
    """twisted's `HTTPChannel._respondToBadRequestAndDisconnect` with `BAD_REQUEST`."""
    channel.transport.write(BAD_REQUEST)
    channel.loseConnection()


def _line_length_exceeded(channel: http.HTTPChannel, line: bytes) -> None:
    """A request line or header line over the limit: `BAD_REQUEST` (twisted's `LineReceiver`
    closes the connection without a word)."""
    _respond_to_bad_request_and_disconnect(channel)


def _too_large_answer(max_bytes: int) -> bytes:
    """The 413 sent for a body over `max_bytes`, as the API words it; the connection closes."""
    from deerflow_site.api.errors import TOO_LARGE

    body = json.dumps({"detail": TOO_LARGE, "max_bytes": max_bytes}).encode()
    return (
        b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body


class BodyLimit:
    """The request body limit, enforced while twisted reads a request (installed by
    `StreamServer.run` on twisted's channel and daphne's request)."""

    max_bytes = 0
    answer = b""
    all_headers_received = http.HTTPChannel.allHeadersReceived
    handle_content_chunk = WebRequest.handleContentChunk
    request_received = WebRequest.requestReceived

    @classmethod
    def install(cls, max_bytes: int) -> None:
        cls.max_bytes = max_bytes
        cls.answer = _too_large_answer(max_bytes)
        http.HTTPChannel.allHeadersReceived = _all_headers_received
        WebRequest.handleContentChunk = _handle_content_chunk
        WebRequest.requestReceived = _request_received

    @classmethod
    def refuse(cls, channel: http.HTTPChannel) -> None:
        channel.transport.write(cls.answer)
        channel.loseConnection()  # nothing more is read: the rest of the body is never stored


def _all_headers_received(channel: http.HTTPChannel) -> None:
    """A declared Content-Length over the limit: the 413 before any of the body is read (the
    request gets no content file, and the reading stops with the connection)."""
    if channel.length is not None and channel.length > BodyLimit.max_bytes:
        BodyLimit.refuse(channel)
        return
    BodyLimit.all_headers_received(channel)


def _handle_content_chunk(request: WebRequest, data: bytes) -> None:
    """Body bytes as they come (a chunked body has no declared length): past the limit, the
    content is dropped (None marks the request refused) and the 413 sent."""
    content = request.content
    if content is None:  # refused: what was already received is not stored
        return
    if content.tell() + len(data) > BodyLimit.max_bytes:
        request.content = None
        content.close()
        BodyLimit.refuse(request.channel)
        return
    BodyLimit.handle_content_chunk(request, data)


def _request_received(request: WebRequest, command: bytes, path: bytes, version: bytes) -> None:
    """A refused request's end of body (already received with its last chunk) reaches no
    application."""
    if request.content is not None:
        BodyLimit.request_received(request, command, path, version)


#: The server walks its connections for finished applications every this many seconds
#: (daphne: every second).
APPLICATION_CHECK_EVERY = 5


class ApplicationInput:
    """What daphne's protocols and an ASGI application use of an `asyncio.Queue`: `put_nowait`
    (the protocol's messages: the request body, the disconnect) and `get` (the application's
    `receive`). Unbounded, in order; its buffers exist only while messages wait."""

    __slots__ = ("_getters", "_messages")

    def __init__(self) -> None:
        self._messages: deque[dict[str, Any]] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, message: dict[str, Any]) -> None:
        if self._messages is None:
            self._messages = deque()
        self._messages.append(message)
        if self._getters:
            for getter in self._getters:
                if not getter.done():
                    getter.set_result(None)
                    break

    def qsize(self) -> int:
        return len(self._messages or ())

    def empty(self) -> bool:
        return not self._messages

    async def get(self) -> dict[str, Any]:
        """The next message, once there is one."""
        while not self._messages:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                # Woken and cancelled before taking the message: the next reader takes it.
                self._getters.remove(getter)
                if self._messages and self._getters and not self._getters[0].done():
                    self._getters[0].set_result(None)
                if not self._getters:
                    self._getters = None
                raise
            self._getters.remove(getter)
            if not self._getters:
                self._getters = None
        message = self._messages.popleft()
        if not self._messages:
            self._messages = None
        elif self._getters and not self._getters[0].done():
            self._getters[0].set_result(None)  # another reader waits, and a message is left
        return message


def flush_now(transport: Any) -> None:
    """Write what a plain TCP or Unix socket transport (twisted's `tcp.Connection`) holds
    buffered now, instead of at the loop's next look at the socket; anything else (TLS, a
    connection closing, nothing buffered) is left to the reactor.

    This is the reactor's own write (`doWrite`), called early: what the socket does not take,
    and a failed write, stay with the transport, whose writer is still registered, and the
    reactor's next write does what it always does with them (a lost connection is seen there).
    A transport that is closing is never written here, since the write that empties it must
    return the close to the reactor."""
    if (
        isinstance(transport, tcp.Connection)
        and transport._tempDataLen
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
        and not getattr(transport, "TLS", False)
    ):
        transport.doWrite()


class StreamServer(Server):
    """daphne's `Server` with a light application input and a slower connection walk, which
    prints `announce` once it listens on every endpoint."""

    def __init__(self, *args: Any, announce: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.announce = announce
        self._listening = 0

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        self._listening += 1
        if self.announce and self._listening == len(self.endpoints):
            print(self.announce, flush=True)

    def listen_error(self, failure: Any) -> None:
        print(
            f"Not serving: {failure.getErrorMessage()} Stop what holds it, or choose another "
            "address (scripts/serve: HOST, PORT).",
            file=sys.stderr,
            flush=True,
        )
        self.stop()  # before the reactor runs: the command line exits 1

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> ApplicationInput | None:
        # daphne's own method, with the input made here instead of an asyncio.Queue.
        assert "application_instance" not in self.connections[protocol]
        application_input = ApplicationInput()
        scope.setdefault("asgi", {"version": "3.0"})
        instance = self.application(
            scope=scope,
            receive=application_input.get,
            send=partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
        return application_input

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        # daphne's own method (no await in it), then the bytes it buffered written at once
        # after a response's first body message (status line and headers) and its last.
        await super().handle_reply(protocol, message)
        kind = message["type"]
        if kind == "http.response.start":
            protocol.deerflow_first_body = True
        elif kind == "http.response.body" and (
            not message.get("more_body", False) or getattr(protocol, "deerflow_first_body", False)
        ):
            protocol.deerflow_first_body = False
            flush_now(getattr(protocol, "transport", None))

    def protocol_connected(self, protocol: Any) -> None:
        # daphne's WebRequest calls this from its __init__, once twisted's Request.__init__ has
        # stored parsePOSTFormSubmission (True, the Site-less default) as this attribute.
        if isinstance(protocol, http.Request):
            protocol._parsePOSTFormSubmission = False
        super().protocol_connected(protocol)

    def run(self) -> None:
        http.HTTPChannel._respondToBadRequestAndDisconnect = _respond_to_bad_request_and_disconnect
        http.HTTPChannel.lineLengthExceeded = _line_length_exceeded
        from django.conf import settings

        BodyLimit.install(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        settle_heap()  # the application is imported: what is alive now lives as long as we do
        # SIGTERM: the embedded worker's runs finish (or end `error`) before the loop stops.
        reactor.addSystemEventTrigger("before", "shutdown", _stop_embedded_worker)
        super().run()

    def application_checker(self) -> None:
        # daphne calls this every second (it reschedules itself); one call in
        # APPLICATION_CHECK_EVERY walks the connections, the others only reschedule.
        self._checks = getattr(self, "_checks", 0) + 1
        if self._checks % APPLICATION_CHECK_EVERY:
            reactor.callLater(1, self.application_checker)
        else:
            super().application_checker()


def _stop_embedded_worker() -> defer.Deferred:
    from runs.engine import stop_embedded_worker

    return defer.Deferred.fromFuture(asyncio.ensure_future(stop_embedded_worker()))


class StreamServerCommand(CommandLineInterface):
    """daphne's command line, serving with `StreamServer`."""

    server_class = StreamServer

    def __init__(self) -> None:
        super().__init__()
        self.parser.add_argument(
            "--announce",
            default=None,
            help="text to print on stdout once the server listens on every endpoint",
        )

    def run(self, args: list[str]) -> None:
        announce = self.parser.parse_args(args).announce
        self.server_class = partial(StreamServer, announce=announce)
        super().run(args)


if __name__ == "__main__":
    try:
        StreamServerCommand.entrypoint()
    except ImproperlyConfigured as exc:  # raised importing the application: settings, graphs
        sys.exit(f"configuration error: {exc}")
