"""The playground's one page: the HTML shell around the prebuilt bundle (static/playground/)."""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe


@require_safe
def playground_page(request: HttpRequest) -> HttpResponse:
    """GET /playground/: the chat page.

    The page gets, as JSON in the HTML: `apiPrefix` (where the API lives, e.g. "/api"),
    `csrfToken` (sent as X-CSRFToken, which a Django login session needs on writes) and
    `loginUrl` (offered when the API refuses the page: token mode without a session).
    """
    page_settings = {
        "apiPrefix": "/" + settings.API_PREFIX.strip("/"),
        "csrfToken": get_token(request),
        "loginUrl": redirect_to_login(
            request.get_full_path(), login_url=reverse("admin:login")
        ).url,
    }
    return render(request, "playground/index.html", {"page_settings": page_settings})
