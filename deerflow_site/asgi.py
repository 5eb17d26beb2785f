"""The ASGI application daphne serves; with the embedded worker on, it also runs graphs."""

import asyncio
import io
import logging
import os
import tempfile
from contextlib import aclosing
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deerflow_site.settings")
django.setup(set_prefix=False)

from asgiref.sync import iscoroutinefunction  # noqa: E402
from django.conf import settings  # noqa: E402 - after Django is set up
from django.core import signals  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.db import close_old_connections, reset_queries  # noqa: E402
from django.http import HttpRequest, HttpResponseBase  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from deerflow_site.bridge import (  # noqa: E402
    current_request_thread,
    ending_with_upkeep,
    request_thread,
)
from deerflow_site.middleware_chain import flat_chain  # noqa: E402
from deerflow_site.streaming import LastChunk  # noqa: E402
from runs.graph_checks import load_all_graphs  # noqa: E402

logger = logging.getLogger("deerflow_site")

#: Responses that stay open for a run's life: SSE streams, waits and joins.
LONG_LIVED_SUFFIXES = ("/stream", "/wait", "/join")


class RunServerHandler(ASGIHandler):
    """Django's ASGI handler, with pooled request threads, and none for long-lived responses.

    Django gives every request a thread-sensitive context, hence a new thread (and database
    connection) per request, which lives as long as the response: one idle thread per open
    stream. Short requests borrow a pooled thread instead (`bridge.request_thread`). Streams and
    waits do their database work on a bounded pool, so they run without that context.
    """

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # refused, as Django does
        elif scope["path"].endswith(LONG_LIVED_SUFFIXES):
            await self.handle(scope, receive, send)
        else:
            async with request_thread():
                await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        """Django's chain, called flat (`middleware_chain.FlatChain`: the same hooks, in the
        same order, from one coroutine), the API's paths without the middlewares they never use."""
        super().load_middleware(is_async)
        if is_async:
            self._middleware_chain = flat_chain(
                self._middleware_chain, self._get_response_async, f"{settings.API_PREFIX}/"
            )

    def make_view_atomic(self, view: Any) -> Any:
        """A sync view, on a request thread, is called there through `RequestThread.call` (one
        submit and one future; Django would wrap it in asgiref's `sync_to_async`) and ends with
        that thread's connection upkeep. Off the request threads (a path ending like a
        long-lived one, e.g. a thread named `stream`), Django runs it on asgiref's shared
        thread, where it ends with the upkeep too: nothing else closes that thread's broken or
        aged connection (request_started no longer does)."""
        view = super().make_view_atomic(view)
        if iscoroutinefunction(view):
            return view
        thread = current_request_thread()
        if thread is None:
            return ending_with_upkeep(view)
        view = thread.ending_with_upkeep(view)

        async def on_the_request_thread(*args: Any, **kwargs: Any) -> Any:
            return await thread.call(view, *args, **kwargs)

        return on_the_request_thread

    async def read_body(self, receive: Any) -> Any:
        """The request's body as a file: in memory when it came in one message within
        FILE_UPLOAD_MAX_MEMORY_SIZE (every API request), else Django's spooled temporary file.
        RequestAborted when the client left first."""
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        body = message.get("body", b"")
        if (
            not message.get("more_body", False)
            and len(body) <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        ):
            return io.BytesIO(body)
        body_file = tempfile.SpooledTemporaryFile(
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b"
        )
        body_file.write(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            body_file.write(message.get("body", b""))
        body_file.seek(0)
        return body_file

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        """Send `response` over ASGI as Django does (the same messages, headers and bytes),
        except that a streaming body's `LastChunk` ends it: the body's iterator is closed, then
        the chunk goes as the last message (`more_body: False`), with no empty closing message
        after it (a `/wait` answer: the headers' flush, then its answer, two body messages)."""
        headers = []
        for name, value in response.items():  # str, as Django's ResponseHeaders keeps them
            headers.append((name.encode("ascii"), value.encode("latin1")))
        for cookie in response.cookies.values():
            headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        if not response.streaming:
            await self._send_body(response.content, send, last=True)
            return
        async with aclosing(aiter(response)) as content:
            async for part in content:
                if isinstance(part, LastChunk):
                    await content.aclose()  # its clean-up ends before the response does
                    await self._send_body(part, send, last=True)
                    return
                await self._send_body(part, send, last=False)
        await send({"type": "http.response.body"})

    async def _send_body(self, data: bytes, send: Any, *, last: bool) -> None:
        """`data` in body messages of at most `chunk_size` bytes (one, empty, for no data), as
        Django's `chunk_bytes` cuts it; the last one ends the response when `last`."""
        if len(data) <= self.chunk_size:  # one message (an SSE event, an API answer)
            await send({"type": "http.response.body", "body": data, "more_body": not last})
            return
        for chunk, last_chunk in self.chunk_bytes(data):
            await send(
                {
                    "type": "http.response.body",
                    "body": chunk,
                    "more_body": not (last and last_chunk),
                }
            )

    async def handle(self, scope: dict, receive: object, send: object) -> None:
        """Django's request cycle (read the body, answer, watch for the client leaving), with the
        response closed on the event loop rather than in one more thread hop per request.

        Closing sends request_finished, whose receivers work on the calling thread's state: on
        the loop they find no database connection; the request thread's connections get their
        upkeep from `request_thread()` instead, on that thread.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            await signals.request_started.asend(sender=type(self), scope=scope)
            request, response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(response, send)
            else:
                response = await self._answer_unless_gone(request, receive, send)
        finally:
            body_file.close()
        if response is None:  # the client left before the response was made
            await signals.request_finished.asend(sender=type(self))
        else:
            response.close()

    async def _answer_unless_gone(
        self, request: HttpRequest, receive: object, send: object
    ) -> HttpResponseBase | None:
        """The response, sent; None when the client disconnected first (the view is cancelled
        then, so that it can react, e.g. cancel the run it streams).

        The view runs in this task, and one task watches for the client leaving (Django's
        handler runs both in tasks of their own and waits for the first to end): a task, a wait
        and a loop iteration less per request."""
        answering = asyncio.current_task()
        assert answering is not None
        watching = asyncio.create_task(self.listen_for_disconnect(receive))
        stop = _StopAnswering(answering)
        watching.add_done_callback(stop.unless_answered)
        try:
            try:
                response = await self.run_get_response(request)
            except asyncio.CancelledError:
                if not stop.take_back():
                    raise  # cancelled from outside (the server's shutdown)
                if isinstance(stop.reason, RequestAborted):
                    return None
                raise stop.reason from None  # the watcher's failure (AssertionError)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                if not stop.take_back():
                    raise
                # The client left while it was sent.
            return response
        finally:
            stop.answered = True
            stop.take_back()  # a view that swallowed the cancellation leaves no pending one
            _end_watcher(watching)


class _StopAnswering:
    """What ends the answering task when the disconnect watcher ends first: the client left
    (`RequestAborted`), or an unexpected message (AssertionError, as Django raises)."""

    __slots__ = ("answered", "answering", "cancelled", "reason")

    def __init__(self, answering: asyncio.Task[Any]) -> None:
        self.answering = answering
        self.answered = False
        self.cancelled = False
        self.reason: BaseException | None = None

    def unless_answered(self, watching: asyncio.Task[Any]) -> None:
        if self.answered or watching.cancelled():
            return
        self.reason = watching.exception()
        if self.reason is not None:
            self.cancelled = True
            self.answering.cancel()

    def take_back(self) -> bool:
        """True when the answering task's cancellation was this watcher's; the task then goes
        on as not cancelled (once)."""
        if not self.cancelled:
            return False
        self.cancelled = False
        self.answering.uncancel()
        return True


def _end_watcher(watching: asyncio.Task[Any]) -> None:
    if not watching.done():
        watching.cancel()  # nothing waits for it: its receive ends at the next loop iteration
    elif not watching.cancelled():
        watching.exception()  # retrieved: a disconnect after the answer is no error


def connection_upkeep_at_request_end() -> None:
    """Django's request_started receivers are sync, so under ASGI every request paid a thread
    hop just to call them. Their work moves to the end of the request: a connection past
    CONN_MAX_AGE or broken is closed on the request's thread after the request that used it
    (`bridge.connection_upkeep`, run by `request_thread()`, or right after a sync view), and
    the next request's first query checks the connection first (CONN_HEALTH_CHECKS), as it
    did; DEBUG's query log starts afresh after each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_started.disconnect(reset_queries)
    signals.request_finished.connect(reset_queries)


connection_upkeep_at_request_end()
django_application = RunServerHandler()
# A graph that cannot be loaded stops the server here, with the reason, not every run later.
load_all_graphs()

if settings.AUTH_MODE == "local":
    logger.warning(
        "LOCAL AUTH MODE: every request acts as the user %r, without credentials. "
        "Use DEERFLOW_AUTH_MODE=token for anything reachable by others.",
        settings.LOCAL_USERNAME,
    )


async def application(scope: dict, receive: object, send: object) -> None:
    """Django, starting the embedded run worker on the first event of this process's loop."""
    from runs.engine import ensure_embedded_worker

    ensure_embedded_worker()
    await django_application(scope, receive, send)
