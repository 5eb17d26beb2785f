"""Model permissions (API scopes) read in one query and kept per process for a while."""

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import override_settings

from deerflow_site.api import backends

pytestmark = pytest.mark.django_db

CREATE_RUNS = "runs.api_create_runs"


@pytest.fixture(autouse=True)
def empty_cache() -> Any:
    backends.forget_permissions()
    yield
    backends.forget_permissions()


def fresh(user: Any) -> Any:
    """The user as a new request gets it: no permissions cached on the object."""
    return type(user).objects.get(pk=user.pk)


@override_settings(PERMISSION_CACHE_SECONDS=60)
def test_permissions_are_one_query_then_none(user, django_assert_num_queries):
    first, second = fresh(user), fresh(user)
    with django_assert_num_queries(1):
        assert first.has_perm(CREATE_RUNS) is True
        assert first.has_perm("threads.view_thread") is False
    with django_assert_num_queries(0):  # the next request, on the same process
        assert second.has_perm(CREATE_RUNS) is True


@override_settings(PERMISSION_CACHE_SECONDS=60)
def test_a_change_made_in_this_process_applies_at_once(user):
    assert fresh(user).has_perm(CREATE_RUNS)
    user.groups.remove(Group.objects.get(name="api-users"))
    assert not fresh(user).has_perm(CREATE_RUNS)
    user.user_permissions.add(Permission.objects.get(codename="api_create_runs"))
    assert fresh(user).has_perm(CREATE_RUNS)


@override_settings(PERMISSION_CACHE_SECONDS=60)
def test_a_change_another_process_made_shows_once_the_cache_expires(user):
    assert fresh(user).has_perm(CREATE_RUNS)
    # What another process's admin did: rows changed without this process's signals.
    type(user).groups.through.objects.filter(user=user).delete()
    assert fresh(user).has_perm(CREATE_RUNS)  # still cached here
    backends._cache[user.pk] = (0.0, backends._cache[user.pk][1])  # the time has passed
    assert not fresh(user).has_perm(CREATE_RUNS)


@override_settings(PERMISSION_CACHE_SECONDS=0)
def test_no_caching_with_zero_seconds(user):
    assert fresh(user).has_perm(CREATE_RUNS)
    type(user).groups.through.objects.filter(user=user).delete()
    assert not fresh(user).has_perm(CREATE_RUNS)


def test_inactive_users_and_superusers(make_user):
    inactive = make_user("gone", is_active=False)
    assert not fresh(inactive).has_perm(CREATE_RUNS)
    root = make_user("root", is_superuser=True)
    assert fresh(root).has_perm("threads.delete_thread")
