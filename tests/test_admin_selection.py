"""A malformed id sent to the admin (a forged form or address) names no object: an action on it
does nothing and says so, a page for it is a 404; a NUL character anywhere in a request is a
400 (PostgreSQL cannot look it up); never a 500 from the lookup."""

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from tests.engine_support import make_thread
from threads.models import Thread
from threads.services import create_thread

pytestmark = pytest.mark.django_db

#: Not a UUID, not an integer (or one beyond 64 bits, which SQLite cannot bind and PostgreSQL's
#: bigint cannot hold): no primary key of ours or Django's reads it.
MALFORMED = ["abc", "1.5", "\x00", "9" * 30]

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
            assert response.status_code in (200, 302, 400), (action, value, response.status_code)

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


def admin_list_urls() -> list[str]:
    return [
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in admin.site._registry
    ]


@pytest.mark.parametrize("url", admin_list_urls())
@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
def test_a_nul_character_in_a_filter_search_or_selection_is_400(
    staff: Client, user: Any, url: str, value: str
) -> None:
    # PostgreSQL refuses a NUL in a text parameter: the lookup would fail (a 500) there.
    make_thread(user=user)
    for param in ("q", "thread_id", "run_id", "username", "status", "graph_id", "event_type"):
        assert staff.get(url, {param: value}).status_code == 400, param
    action = {"action": "delete_selected", "_selected_action": [value], "index": 0}
    assert staff.post(url, action).status_code == 400
    assert staff.get(f"{url}{value}/change/").status_code == 400


@pytest.mark.parametrize("page", ["change", "delete", "history", "permissions"])
def test_a_nul_character_in_a_threads_address_is_400(staff: Client, page: str) -> None:
    assert staff.get(f"/admin/threads/thread/a%00b/{page}/").status_code == 400


#: Metadata the API's writes could not take: no object (a PATCH, a run's admission, a copy and a
#: state update merge into it), or JSON every request body is refused for (NaN and Infinity the
#: database refuses; nesting Python's decoder recurses on; the NUL character; 65-bit integers).
HOSTILE_METADATA = {
    "list": "[1, 2]",
    "string": '"text"',
    "number": "5",
    "null": "null",
    "nan": '{"a": NaN}',
    "infinity": '{"a": 1e999}',
    "deep": '{"a": ' * 2000 + "1" + "}" * 2000,
    "65-bit": '{"a": 99999999999999999999999}',
    "nul": '{"note": "a\\u0000b"}',
}


@pytest.mark.parametrize("metadata", HOSTILE_METADATA.values(), ids=HOSTILE_METADATA)
@pytest.mark.parametrize("thread_id", [None, "hostile-metadata"])
def test_thread_metadata_the_api_cannot_take_is_a_form_error(
    staff: Client, user: Any, thread_id: str | None, metadata: str
) -> None:
    form = {"owner": user.pk, "metadata": metadata}
    if thread_id is None:
        url = "/admin/threads/thread/add/"
        form["thread_id"] = "added-with-hostile-metadata"
    else:
        create_thread(user=user, thread_id=thread_id, metadata={"kept": True})
        url = f"/admin/threads/thread/{thread_id}/change/"

    response = staff.post(url, form)

    assert response.status_code == 200  # the form again, with its error
    assert "Enter valid JSON" in response.content.decode() or "JSON object" in (
        response.content.decode()
    )
    assert [t.metadata for t in Thread.objects.all()] == (
        [] if thread_id is None else [{"kept": True}]
    )


def test_blank_thread_metadata_in_the_admin_is_an_empty_object(staff: Client, user: Any) -> None:
    form = {"owner": user.pk, "metadata": "", "thread_id": "blank-metadata"}

    assert staff.post("/admin/threads/thread/add/", form).status_code == 302

    assert Thread.objects.get(pk="blank-metadata").metadata == {}


@pytest.mark.parametrize("model_admin", ADMINS, ids=str)
def test_a_lists_integer_beyond_64_bits_is_no_500(staff: Client, model_admin: Any) -> None:
    # SQLite cannot bind an integer beyond 64 bits (OverflowError); PostgreSQL compares it.
    opts = model_admin.model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    big = "9" * 30
    for lookup in (f"{opts.pk.name}__in", "id__in", "seq__in", "pk"):
        response = staff.get(url, {lookup: f"1,{big}" if lookup.endswith("__in") else big})
        assert response.status_code in (200, 302, 400), (lookup, response.status_code)


def test_a_forms_choice_of_an_integer_beyond_64_bits_is_no_500(staff: Client, user: Any) -> None:
    # Django's multiple-choice field looks the choices up with pk__in (OverflowError on SQLite).
    big = "9" * 30
    groups = set(user.groups.all())
    form = {"username": user.username, "groups": [big], "user_permissions": [big]}
    form |= {"date_joined_0": "2020-01-01", "date_joined_1": "00:00:00", "is_active": "on"}
    changed = staff.post(f"/admin/auth/user/{user.pk}/change/", form)
    added = staff.post("/admin/auth/group/add/", {"name": "big", "permissions": [big]})

    assert changed.status_code in (200, 400) and added.status_code in (200, 400)
    assert set(user.groups.all()) == groups
    assert not Group.objects.filter(name="big").exists()
