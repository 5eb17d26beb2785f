from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularJSONAPIView

import feedback.urls
import runs.assistants.urls
import runs.urls
import threads.urls
from deerflow_site.api import schema  # noqa: F401 - registers the OpenAPI auth extensions
from deerflow_site.api.async_views import by_method
from deerflow_site.api.meta import (
    ApiDocsView,
    ApiRootView,
    InfoView,
    OperationsStatusView,
    api_not_found,
)
from deerflow_site.front import favicon, front_page
from deerflow_site.health import ok

prefix = settings.API_PREFIX.strip("/")

admin.site.site_header = settings.PROJECT_NAME
admin.site.site_title = settings.PROJECT_NAME
admin.site.index_title = "Threads, runs and users"
admin.site.site_url = "/"  # "View site": the front page
admin.site.index_template = "admin/deerflow_index.html"  # with the operations status

# One flat list: each app's patterns are spliced in rather than included, so that resolving a
# path tries patterns only (an include that does not match raises, and its failed patterns are
# listed for the error, at every request to a later app's path).
api_patterns = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("ok", by_method(get=ok), name="ok"),
    path("info", InfoView.as_view(), name="info"),
    path("ops/status", OperationsStatusView.as_view(), name="operations-status"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    re_path(r"^docs/?$", ApiDocsView.as_view(url_name="openapi"), name="api-docs"),
    *threads.urls.urlpatterns,
    *runs.urls.urlpatterns,
    *runs.assistants.urls.urlpatterns,
    *feedback.urls.urlpatterns,
    re_path(r"^(?P<path>.*)$", api_not_found, name="api-not-found"),
]

# Under the API prefix, errors raised before or around a view answer JSON too.
handler400 = "deerflow_site.error_views.bad_request"
handler403 = "deerflow_site.error_views.permission_denied"
handler404 = "deerflow_site.error_views.page_not_found"
handler500 = "deerflow_site.error_views.server_error"

urlpatterns = [
    path("", front_page, name="front-page"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    # The admin's and the API docs' assets, from the installed apps: no collectstatic step. Every
    # middleware stays async-capable, so streams never hold a thread (a front proxy may serve
    # DEERFLOW_STATIC_ROOT instead).
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
    path(prefix, RedirectView.as_view(url=f"/{prefix}/")),
    path(f"{prefix}/", include(api_patterns)),
    path("playground/", include("playground.urls")),
]
