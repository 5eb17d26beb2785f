"""The middleware chain as one coroutine, and a shorter one for the API's paths.

Django nests the middlewares: each one is wrapped in an exception converter
(`convert_exception_to_response`) and calls the next through its `__acall__`, two coroutines and
a few `hasattr` per middleware and request (about 50 Python calls per request for our eight).
`FlatChain` calls the same hooks of the same instances in the same order from one coroutine, with
the same outcome for every request:

- each middleware's `process_request`, outermost first; the first that answers (or raises)
  ends the way in; otherwise the handler (URL resolution, view middleware, the view) answers;
- then the `process_response` of every middleware whose `process_request` ran without raising,
  innermost first (the one that answered included);
- an exception a hook raises becomes its response (`response_for_exception`) where Django's
  converter around that middleware would have made it, and the outer middlewares see that
  response, as they do in Django's nesting.

A middleware's `process_response` that may use the database (`InlineHooks.response_needs_thread`)
goes to a thread exactly as it did. The chain is flat only when every middleware is one of ours
(`InlineHooks`, `CorsMiddleware`); anything else keeps Django's nesting.

The API's paths (under API_PREFIX) take a chain without `MessageMiddleware`: the API never reads
or adds a message (its views answer JSON, its errors too), so that middleware can only make a
lazy storage that nothing uses and look at it again on the way out.
"""

from collections.abc import Callable, Sequence
from typing import Any

from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponseBase

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.middleware import CorsMiddleware, InlineHooks, MessageMiddleware

#: Middlewares the API's paths do without (see the module's docstring).
NOT_FOR_THE_API = (MessageMiddleware,)

Hook = Callable[..., Any]


class FlatChain:
    """`middlewares`' hooks around `handler` (Django's `_get_response_async` in its converter),
    called as Django's nested chain calls them (the module's docstring); a request whose
    `path_info` starts with `api_prefix` goes through those of them the API needs."""

    def __init__(
        self, middlewares: Sequence[Any], handler: Callable[..., Any], api_prefix: str
    ) -> None:
        self.handler = handler
        self.api_prefix = api_prefix
        self.every_path = _hooks(middlewares)
        self.api = _hooks([m for m in middlewares if not isinstance(m, NOT_FOR_THE_API)])

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        hooks = self.api if request.path_info.startswith(self.api_prefix) else self.every_path
        response = None
        answered = len(hooks) - 1  # the innermost middleware whose way out runs
        for index, (process_request, _, _) in enumerate(hooks):
            if process_request is None:
                continue
            try:
                response = process_request(request)
            except Exception as exc:
                response = await _response_for(request, exc)
                answered = index - 1  # its converter answers: its own way out does not run
                break
            if response:
                answered = index
                break
        else:
            response = await self.handler(request)
        for index in range(answered, -1, -1):
            _, process_response, needs_thread = hooks[index]
            if process_response is None:
                continue
            try:
                if needs_thread is not None and needs_thread(request):
                    response = await call_sync(
                        process_response, request, response, on=Executor.THREAD_SENSITIVE
                    )
                else:
                    response = process_response(request, response)
            except Exception as exc:
                response = await _response_for(request, exc)
        return response


def _hooks(middlewares: Sequence[Any]) -> list[tuple[Hook | None, Hook | None, Hook | None]]:
    """Per middleware: its `process_request`, its `process_response`, and what tells whether
    that one goes to a thread (None: never)."""
    hooks: list[tuple[Hook | None, Hook | None, Hook | None]] = []
    for middleware in middlewares:
        if isinstance(middleware, CorsMiddleware):  # corsheaders' own __acall__'s hooks
            hooks.append((middleware.check_preflight, middleware.add_response_headers, None))
            continue
        needs_thread = middleware.response_needs_thread
        if getattr(needs_thread, "__func__", None) is InlineHooks.response_needs_thread:
            needs_thread = None
        hooks.append(
            (
                getattr(middleware, "process_request", None),
                getattr(middleware, "process_response", None),
                needs_thread,
            )
        )
    return hooks


async def _response_for(request: HttpRequest, exc: Exception) -> HttpResponseBase:
    """What Django's converter around a middleware answers for `exc` (off the loop, as it)."""
    return await call_sync(response_for_exception, request, exc, on=Executor.BLOCKING)


def flat_chain(chain: Any, innermost: Any, api_prefix: str) -> Any:
    """A `FlatChain` of Django's nested async `chain` around `innermost` (the handler's
    `_get_response_async`), when every middleware in it is one of ours (async: none adapted);
    else `chain` itself."""
    middlewares: list[Any] = []
    while True:
        wrapped = getattr(chain, "__wrapped__", None)  # what the converter wraps
        if wrapped == innermost:
            return FlatChain(middlewares, chain, api_prefix)
        if not isinstance(wrapped, (InlineHooks, CorsMiddleware)):
            return chain
        if not getattr(wrapped, "async_mode", False):
            return chain
        middlewares.append(wrapped)
        chain = wrapped.get_response
