"""A change to a user's credentials or rights takes effect on their next request, in this
process: a revoked token, a deactivated user, a scope taken away or given (through a group or
directly). `has_model_permission` (the scope check's quick answer) agrees with `has_perm`."""

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import override_settings
from rest_framework.authtoken.models import Token

from deerflow_site.api.backends import forget_permissions, has_model_permission
from tests.fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)  # async views authenticate on their threads

CREATE_RUNS = "runs.api_create_runs"


@pytest.fixture(autouse=True)
def long_permission_cache() -> Any:
    """Cached for a minute: what the test sees comes from invalidation, not expiry."""
    forget_permissions()
    with override_settings(PERMISSION_CACHE_SECONDS=60):
        yield
    forget_permissions()


def create_thread(api: Any) -> Any:
    return api.post("/api/threads", {}, format="json")


def create_run(api: Any, thread_id: str) -> Any:
    return api.post(f"/api/threads/{thread_id}/runs", {"assistant_id": "echo"}, format="json")


def test_a_token_revoked_between_two_requests_is_refused_on_the_second(api, user) -> None:
    thread_id = create_thread(api).json()["thread_id"]
    assert create_run(api, thread_id).status_code == 200
    Token.objects.filter(user=user).delete()
    assert create_thread(api).status_code == 401
    assert create_run(api, thread_id).status_code == 401


def test_a_user_deactivated_between_two_requests_is_refused_on_the_second(api, user) -> None:
    thread_id = create_thread(api).json()["thread_id"]
    assert create_run(api, thread_id).status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert create_thread(api).status_code == 401
    assert create_run(api, thread_id).status_code == 401


def test_a_scope_taken_away_through_the_group_is_refused_on_the_next_request(api, user) -> None:
    thread_id = create_thread(api).json()["thread_id"]
    assert create_run(api, thread_id).status_code == 200
    user.groups.remove(Group.objects.get(name="api-users"))
    assert create_run(api, thread_id).status_code == 403
    assert create_thread(api).status_code == 403


def test_a_group_losing_the_permission_takes_it_from_its_members_at_once(api, user) -> None:
    thread_id = create_thread(api).json()["thread_id"]
    assert create_run(api, thread_id).status_code == 200
    group = Group.objects.get(name="api-users")
    group.permissions.remove(Permission.objects.get(codename="api_create_runs"))
    assert create_run(api, thread_id).status_code == 403


def test_a_scope_given_directly_applies_on_the_next_request(api, user) -> None:
    thread_id = create_thread(api).json()["thread_id"]
    user.groups.clear()
    assert create_run(api, thread_id).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="api_create_runs"))
    assert create_run(api, thread_id).status_code == 200


def test_a_new_token_works_at_once(user) -> None:
    Token.objects.filter(user=user).delete()
    fresh_token_client = client_for(user)
    assert create_thread(fresh_token_client).status_code == 200


def fresh(user: Any) -> Any:
    return type(user).objects.get(pk=user.pk)


@pytest.mark.parametrize("backends_reversed", [False, True])
def test_has_model_permission_agrees_with_has_perm(make_user, settings, backends_reversed):
    if backends_reversed:
        settings.AUTHENTICATION_BACKENDS = settings.AUTHENTICATION_BACKENDS[::-1]
    member = make_user("member")
    outsider = make_user("outsider")
    outsider.groups.clear()
    direct = make_user("direct")
    direct.groups.clear()
    direct.user_permissions.add(Permission.objects.get(codename="api_create_runs"))
    inactive = make_user("inactive", is_active=False)
    root = make_user("root", is_superuser=True)
    inactive_root = make_user("inactive-root", is_superuser=True, is_active=False)
    for user in (member, outsider, direct, inactive, root, inactive_root):
        for perm in (CREATE_RUNS, "threads.api_read_threads", "threads.delete_thread", "x.y"):
            assert has_model_permission(fresh(user), perm) == fresh(user).has_perm(perm), (
                user.username,
                perm,
            )
