"""`{% operations_status %}`: the run queue and the workers, on the admin's index page."""

from typing import Any

from django import template

from runs.operations import operations_status as current_status

register = template.Library()


@register.inclusion_tag("admin/operations_status.html", takes_context=True)
def operations_status(context: dict[str, Any]) -> dict[str, Any]:
    """The status for staff who may view runs; nothing for anyone else."""
    user = context["request"].user
    if not (user.is_staff and user.has_perm("runs.view_run")):
        return {"status": None}
    return {"status": current_status()}
