"""Request bodies and queries of the assistant endpoints."""

from typing import Any

from rest_framework import serializers

from deerflow_site.api.pagination import LimitOffsetSerializer
from deerflow_site.api.serializers import (
    INTEGER_PATTERN,
    BoundedIntegerField,
    JSONObjectField,
    RequestSerializer,
)
from runs.assistants.selectors import ASSISTANT_FIELDS, SORT_FIELDS


class AssistantCountSerializer(RequestSerializer):
    graph_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    name = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    metadata = JSONObjectField(required=False, allow_null=True)


class AssistantSearchSerializer(AssistantCountSerializer, LimitOffsetSerializer):
    sort_by = serializers.ChoiceField(choices=SORT_FIELDS, required=False, allow_null=True)
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False, allow_null=True)
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=ASSISTANT_FIELDS), required=False, allow_null=True
    )


class VersionsSerializer(LimitOffsetSerializer):
    metadata = JSONObjectField(required=False, allow_null=True)


class SetLatestSerializer(RequestSerializer):
    version = BoundedIntegerField()


#: The deepest subgraph level a drawing may expand.
MAX_XRAY_DEPTH = 100


class XrayField(serializers.Field):
    """`xray`: true/false or a subgraph depth (0..MAX_XRAY_DEPTH)."""

    def to_internal_value(self, data: Any) -> bool | int:
        if isinstance(data, bool):
            return data
        text = str(data).lower()
        if text in ("true", "false"):
            return text == "true"
        if INTEGER_PATTERN.fullmatch(text) and 0 <= int(text) <= MAX_XRAY_DEPTH:
            return int(text)
        raise serializers.ValidationError("Must be true, false or a non-negative integer.")


class GraphQuerySerializer(RequestSerializer):
    xray = XrayField(required=False, default=False)


class SubgraphsQuerySerializer(RequestSerializer):
    recurse = serializers.BooleanField(required=False, default=False)
