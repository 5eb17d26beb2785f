"""Django's user and group admins, with their actions' selections checked
(`deerflow_site.admin_selection`)."""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from deerflow_site.admin_selection import ChecksSelectedIds

User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(ChecksSelectedIds, auth_admin.UserAdmin):
    """Django's user admin."""


@admin.register(Group)
class GroupAdmin(ChecksSelectedIds, auth_admin.GroupAdmin):
    """Django's group admin."""
