"""Django's user and group admins, with their actions' selections checked
(`deerflow_site.admin_selection`); a user is deleted through `threads.services.delete_user`
(their threads with their checkpoints, refused while one is busy)."""

from typing import Any

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from deerflow_site.admin_deletion import DeletesThroughService
from deerflow_site.admin_selection import ChecksSelectedIds
from threads.services import delete_user

User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(DeletesThroughService, auth_admin.UserAdmin):
    """Django's user admin, whose deletions go through `delete_user`."""

    def delete_object(self, obj: Any) -> None:
        delete_user(user=obj)


@admin.register(Group)
class GroupAdmin(ChecksSelectedIds, auth_admin.GroupAdmin):
    """Django's group admin."""
