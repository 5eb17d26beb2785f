"""Ids that reach the admin from a request are checked before any lookup: one that is not of
its model's primary key (a forged form or address: "abc" for a run's UUID or a user's integer)
is an unknown object, as Django's own pages treat it, never a ValidationError from the lookup
(a 500)."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Field, QuerySet
from django.http import Http404, HttpRequest, HttpResponseRedirect


def is_key_of(field: Field, value: Any) -> bool:
    """Whether `value` can be looked up as `field` (a primary key): its conversion raises
    neither ValidationError nor ValueError (as Django's get_object checks it), and it passes
    the field's validators, an integer's range on this database among them (a 30-digit id
    passes Django's check, and its lookup in an action's `pk__in` overflowed: a 500)."""
    try:
        python = field.to_python(value)
        field.get_prep_value(python)
        field.run_validators(python)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


class ChecksSelectedIds(admin.ModelAdmin):
    """A ModelAdmin whose actions refuse a selection with a malformed id, with a message."""

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        key = self.model._meta.pk
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if all(is_key_of(key, value) for value in selected):
            return super().response_action(request, queryset)
        name = self.model._meta.verbose_name_plural
        self.message_user(request, f"No such {name}: nothing was done.", messages.WARNING)
        return HttpResponseRedirect(request.get_full_path())


def found_key(field: Field, value: Any) -> Any:
    """`value` as an id of `field`, or Http404 (an address naming no object)."""
    if not is_key_of(field, value):
        raise Http404
    return value
