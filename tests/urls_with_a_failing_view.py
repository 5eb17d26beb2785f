"""The project's URLs plus a view that fails, under the API prefix and outside it (tests only)."""

from django.urls import path

from deerflow_site.urls import *  # noqa: F403 - the handlers too
from deerflow_site.urls import urlpatterns as site_urlpatterns


def failing_view(request):
    raise RuntimeError("a bug")


urlpatterns = [
    path("api/failing", failing_view),
    path("failing", failing_view),
    *site_urlpatterns,
]
