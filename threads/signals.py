"""The default API group: every new user may use the API (SPEC: scopes granted by default)."""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import post_migrate, post_save
from django.dispatch import receiver

from deerflow_site.api.permissions import SCOPES

DEFAULT_API_GROUP = "api-users"


def default_api_group() -> Group:
    """The group holding every API scope, created (and completed) on demand."""
    group, _ = Group.objects.get_or_create(name=DEFAULT_API_GROUP)
    wanted = [scope.split(".") for scope in SCOPES.values()]
    permissions = [
        Permission.objects.filter(content_type__app_label=app, codename=codename).first()
        for app, codename in wanted
    ]
    present = [permission for permission in permissions if permission is not None]
    if len(present) != group.permissions.filter(pk__in=[p.pk for p in present]).count():
        group.permissions.add(*present)
    return group


@receiver(post_migrate)
def create_default_api_group(sender: Any, app_config: Any = None, **kwargs: Any) -> None:
    if app_config is not None and app_config.label in {"threads", "runs"}:
        default_api_group()


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def add_new_user_to_default_api_group(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if created and not raw:
        instance.groups.add(default_api_group())
