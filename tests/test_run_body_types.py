"""Strict JSON types in run create bodies, on all seven create endpoints of the live server.

The table is made from the create serializer itself, so a field added later is covered too: a
string field given a number, a boolean or a list, a boolean field given `"yes"`, `1` or `"true"`,
a number field given a string or a boolean: each a 422 naming the field, and nothing created.
"""

from typing import Any

import httpx
import pytest
from rest_framework import serializers

from deerflow_site.api.serializers import UUIDStringField
from runs.create_serializers import RunCreateSerializer
from runs.models import Run
from tests.fixtures import CREATE_PATHS

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

STRING_KINDS = (serializers.CharField, serializers.ChoiceField, UUIDStringField)
WRONG_FOR_STRING = (123, True, ["echo"])
WRONG_FOR_BOOLEAN = ("yes", 1, "true")
WRONG_FOR_NUMBER = ("5", True)


def wrong_values() -> list[tuple[str, Any]]:
    """(field, value of the wrong JSON type) for every scalar field of the create body."""
    table = []
    for name, field in RunCreateSerializer().fields.items():
        if isinstance(field, serializers.BooleanField):
            table += [(name, value) for value in WRONG_FOR_BOOLEAN]
        elif isinstance(field, STRING_KINDS):
            table += [(name, value) for value in WRONG_FOR_STRING]
        elif isinstance(field, serializers.FloatField | serializers.IntegerField):
            table += [(name, value) for value in WRONG_FOR_NUMBER]
    return table


def test_the_table_covers_the_fields_of_the_issue() -> None:
    fields = {name for name, _ in wrong_values()}
    assert {"assistant_id", "stream_resumable", "stream_subgraphs", "checkpoint_during"} <= fields
    assert {"webhook", "checkpoint_id", "multitask_strategy", "after_seconds"} <= fields


@pytest.mark.parametrize("path", CREATE_PATHS)
def test_a_wrong_json_type_in_a_create_body_is_422_naming_the_field(daphne_server, headers, path):
    wrong_answers = []
    with httpx.Client(base_url=daphne_server.api_url, headers=headers, timeout=30) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        for field, value in wrong_values():
            body = {"assistant_id": "echo", "input": {"messages": []}, field: value}
            response = client.post(
                path.format(t=thread_id), json=[body] if path.endswith("batch") else body
            )
            if response.status_code != 422 or field not in response.text:
                wrong_answers.append((field, value, response.status_code, response.text[:200]))
    assert wrong_answers == []
    assert not Run.objects.exists()
