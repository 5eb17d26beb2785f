"""Django's messages in the project's middleware (deerflow_site/middleware.py): the storage is made
only when a view uses it, and then works as Django's does."""

from django.contrib import messages
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from deerflow_site.middleware import MessageMiddleware


def _request_through_middleware() -> tuple[MessageMiddleware, object]:
    middleware = MessageMiddleware(lambda request: HttpResponse())
    request = RequestFactory().get("/admin/")
    request.session = SessionStore()
    middleware.process_request(request)
    return middleware, request


def test_a_request_that_uses_no_messages_builds_no_storage_and_sets_no_cookie() -> None:
    middleware, request = _request_through_middleware()
    response = middleware.process_response(request, HttpResponse())

    assert request._messages._wrapped is empty
    assert not middleware.response_needs_thread(request)
    assert "messages" not in response.cookies


def test_a_message_added_by_a_view_is_stored_for_the_next_request() -> None:
    middleware, request = _request_through_middleware()
    messages.success(request, "Run cancelled.")

    assert middleware.response_needs_thread(request)
    response = middleware.process_response(request, HttpResponse())

    next_request = RequestFactory().get("/admin/")
    next_request.COOKIES["messages"] = response.cookies["messages"].value
    next_request.session = SessionStore()
    middleware.process_request(next_request)
    assert [m.message for m in messages.get_messages(next_request)] == ["Run cancelled."]
