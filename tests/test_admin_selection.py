"""A malformed id sent to the admin (a forged form or address) names no object: an action on it
does nothing and says so, a page for it is a 404; never a 500 from the lookup."""

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tests.engine_support import make_thread
from threads.models import Thread

pytestmark = pytest.mark.django_db

#: Not a UUID, not an integer: no primary key of ours or Django's reads it.
MALFORMED = ["abc", "1.5", "\x00"]

ADMINS = sorted(admin.site._registry.values(), key=lambda model_admin: str(model_admin))


@pytest.fixture
def staff() -> Client:
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345!")
    browser = Client(raise_request_exception=False)
    browser.force_login(root)
    return browser


@pytest.mark.parametrize("model_admin", ADMINS, ids=str)
def test_every_action_on_a_malformed_id_does_nothing_and_says_so(
    staff: Client, model_admin: Any
) -> None:
    opts = model_admin.model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    request = staff.get(url).wsgi_request
    actions = list(model_admin.get_actions(request))
    before = model_admin.model._default_manager.count()

    for action in actions:
        for value in MALFORMED:
            chosen = {"action": action, "_selected_action": [value], "index": 0}
            response = staff.post(url, chosen)
            assert response.status_code in (200, 302), (action, value, response.status_code)

    assert model_admin.model._default_manager.count() == before


@pytest.mark.parametrize("kind", ["user", "group"])
@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_sharing_a_thread_with_a_malformed_user_or_group_id_is_404(
    staff: Client, user: Any, kind: str, value: str
) -> None:
    thread = make_thread(user=user)

    response = staff.get(f"/admin/threads/thread/{thread.pk}/permissions/{kind}-manage/{value}/")

    assert response.status_code == 404
    assert Thread.objects.filter(pk=thread.pk).exists()
