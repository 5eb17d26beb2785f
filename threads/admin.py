"""Staff browse threads, share them with users and groups, and add, re-own or delete them through
the same services as the API (owner permissions granted and moved; a busy thread is not deleted,
a deleted one takes its checkpoints with it)."""

import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from guardian.admin import (
    AdminGroupObjectPermissionsForm,
    AdminUserObjectPermissionsForm,
    GuardedModelAdminMixin,
)

from deerflow_site.admin_deletion import DeletesThroughService
from deerflow_site.admin_lists import CappedCountPaginator
from deerflow_site.admin_selection import found_key
from deerflow_site.api.errors import Invalid
from deerflow_site.api.ids import validate_thread_id
from deerflow_site.api.parsers import loads
from threads.models import Thread
from threads.ownership import OWNER_PERMISSIONS
from threads.services import change_owner, create_thread, delete_thread

#: Runs shown on a thread's page, newest first; the rest are on the runs list, filtered.
THREAD_PAGE_RUNS = 20


class ThreadUserPermissionsForm(AdminUserObjectPermissionsForm):
    def get_obj_perms_field_choices(self) -> list[tuple[str, str]]:
        return [c for c in super().get_obj_perms_field_choices() if c[0] in OWNER_PERMISSIONS]


class ThreadGroupPermissionsForm(AdminGroupObjectPermissionsForm):
    def get_obj_perms_field_choices(self) -> list[tuple[str, str]]:
        return [c for c in super().get_obj_perms_field_choices() if c[0] in OWNER_PERMISSIONS]


class MetadataField(forms.JSONField):
    """A thread's metadata as the API takes it: a JSON object (empty: `{}`) within the bounds of
    every JSON body (`deerflow_site.api.parsers.loads`: nesting depth, 64-bit integers, finite
    numbers, no NUL character or lone surrogate). Whatever else the database would refuse, or
    the API's writes could not merge into, is a form error, not a 500 now or later."""

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return {}
        if isinstance(value, str):
            try:
                value = loads(value)
            except ValueError as exc:
                raise ValidationError(f"Enter valid JSON: {exc}.", code="invalid") from None
        if not isinstance(value, dict):
            raise ValidationError("Enter a JSON object ({...}).", code="invalid")
        return value

    def bound_data(self, data: Any, initial: Any) -> Any:
        """The value shown again with the form's errors (Django's own would decode it unbounded)."""
        if data is None:
            return None
        try:
            return loads(data)
        except ValueError:
            return InvalidJSONInput(data)


class ThreadForm(forms.ModelForm):
    """A thread's owner and metadata, as staff change them."""

    metadata = MetadataField(required=False)


class ThreadAddForm(ThreadForm):
    """A new thread: its id, owner and metadata (its state comes from runs)."""

    class Meta:
        model = Thread
        fields = ("thread_id", "owner", "metadata")

    def clean_thread_id(self) -> str:
        """An id the API can address (a UUID or `[A-Za-z0-9_-]{1,64}`)."""
        try:
            return validate_thread_id(self.cleaned_data["thread_id"])
        except Invalid as exc:
            raise forms.ValidationError(exc.detail["thread_id"]) from None


@admin.register(Thread)
class ThreadAdmin(GuardedModelAdminMixin, DeletesThroughService):
    """Threads, with guardian's object-permission pages (sharing with users and groups)."""

    form = ThreadForm
    list_display = ("thread_id", "owner", "status", "created_at", "updated_at")
    list_filter = ("status", "created_at")
    list_select_related = ("owner",)
    search_fields = ("thread_id", "owner__username", "owner__email", "metadata")
    raw_id_fields = ("owner",)
    ordering = ("-created_at",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    #: What only runs change: the state and its summary.
    readonly_fields = (
        "status",
        "values",
        "interrupts",
        "error",
        "config",
        "created_at",
        "updated_at",
        "state_updated_at",
    )
    fields = ("thread_id", "owner", "metadata", "expires_at", *readonly_fields)
    actions = ("delete_selected",)

    def get_form(self, request: HttpRequest, obj: Thread | None = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ThreadAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Thread | None = None) -> Any:
        if obj is None:
            return ThreadAddForm.Meta.fields
        return (*self.fields, *self._runs_for(request))

    def get_readonly_fields(self, request: HttpRequest, obj: Thread | None = None) -> Any:
        if obj is None:
            return ()
        return ("thread_id", *self.readonly_fields, *self._runs_for(request))

    @staticmethod
    def _runs_for(request: HttpRequest) -> tuple[str, ...]:
        """The runs table, for staff who may view runs only."""
        return ("recent_runs",) if request.user.has_perm("runs.view_run") else ()

    def save_model(self, request: HttpRequest, obj: Thread, form: Any, change: bool) -> None:
        if not change:
            created, _ = create_thread(
                user=obj.owner, thread_id=obj.thread_id, metadata=obj.metadata
            )
            obj.__dict__.update(created.__dict__)
            return
        if "owner" in form.changed_data:
            change_owner(thread=obj, owner=obj.owner)
        obj.save(update_fields=[f for f in form.changed_data if f != "owner"] + ["updated_at"])

    def delete_object(self, obj: Thread) -> None:
        delete_thread(thread=obj)

    # --- Sharing ---------------------------------------------------------------------------

    def obj_perms_manage_user_view(
        self, request: HttpRequest, object_pk: str, user_id: str
    ) -> HttpResponse:
        user_id = found_key(get_user_model()._meta.pk, user_id)
        return super().obj_perms_manage_user_view(request, object_pk, user_id)

    def obj_perms_manage_group_view(
        self, request: HttpRequest, object_pk: str, group_id: str
    ) -> HttpResponse:
        group_id = found_key(Group._meta.pk, group_id)
        return super().obj_perms_manage_group_view(request, object_pk, group_id)

    def get_obj_perms_manage_user_form(self, request: HttpRequest) -> type[forms.Form]:
        return ThreadUserPermissionsForm

    def get_obj_perms_manage_group_form(self, request: HttpRequest) -> type[forms.Form]:
        return ThreadGroupPermissionsForm

    def get_obj_perms_base_context(self, request: HttpRequest, obj: Thread) -> dict[str, Any]:
        context = super().get_obj_perms_base_context(request, obj)
        context["model_perms"] = [
            perm for perm in context["model_perms"] if perm.codename in OWNER_PERMISSIONS
        ]
        return context

    # --- The thread's runs -----------------------------------------------------------------

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"thread_id": str(uuid.uuid4()), "metadata": {}}

    @admin.display(description="runs (newest first)")
    def recent_runs(self, thread: Thread) -> str:
        from runs.models import Run

        rows = list(
            Run.objects.filter(thread=thread)
            .order_by("-created_at")
            .values_list("run_id", "graph_id", "status", "created_at")[: THREAD_PAGE_RUNS + 1]
        )
        if not rows:
            return "No runs."
        table = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (reverse("admin:runs_run_change", args=[run_id]), run_id, graph, status, created)
                for run_id, graph, status, created in rows[:THREAD_PAGE_RUNS]
            ),
        )
        every_run = reverse("admin:runs_run_changelist") + f"?thread_id={thread.pk}"
        more = "All runs of this thread →" if len(rows) > THREAD_PAGE_RUNS else "In the runs list →"
        return format_html(
            "<table><thead><tr><th>run</th><th>graph</th><th>status</th><th>created</th></tr>"
            '</thead><tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
            table,
            every_run,
            more,
        )
