"""The content negotiation's shortcut answers what DRF's own negotiation answers."""

import pytest
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.test import APIRequestFactory

from deerflow_site.api.negotiation import JsonFirstNegotiation

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "application/*",
    "text/html",
    "text/html, */*;q=0.1",
    "application/json, text/plain, */*",
    "",
    "*/*; charset=utf-8",
]
QUERIES = ["", "?format=json", "?format=api", "?x=1"]
RENDERER_SETS = [
    [JSONRenderer],
    [JSONRenderer, BrowsableAPIRenderer],
    [BrowsableAPIRenderer, JSONRenderer],
    [TemplateHTMLRenderer],
]


def negotiated(negotiation, accept, query, renderers, suffix):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/threads" + query, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(
            request, [cls() for cls in renderers], suffix
        )
    except exceptions.NotAcceptable:
        return "406"
    except Exception as exc:  # what DRF raises for an unknown format (Http404)
        return type(exc).__name__
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_SETS, ids=lambda r: "+".join(c.__name__ for c in r))
@pytest.mark.parametrize("suffix", [None, "json"])
def test_the_shortcut_answers_as_drf_does(renderers, suffix):
    for accept in ACCEPTS:
        for query in QUERIES:
            ours = negotiated(JsonFirstNegotiation(), accept, query, renderers, suffix)
            drf = negotiated(DefaultContentNegotiation(), accept, query, renderers, suffix)
            assert ours == drf, (accept, query)


def test_it_is_the_api_negotiation():
    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is JsonFirstNegotiation


@pytest.mark.django_db
def test_an_unacceptable_accept_header_is_still_a_406(client):
    response = client.get("/api/threads", HTTP_ACCEPT="text/html")
    assert response.status_code == 406
    assert response.json() == {"detail": "Could not satisfy the request Accept header."}
