"""Request bodies and queries of the assistant endpoints."""

from typing import Any

from rest_framework import serializers

from deerflow_site.api.pagination import LimitOffsetSerializer
from deerflow_site.api.serializers import JSONObjectField, RequestSerializer
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
    version = serializers.IntegerField()


class XrayField(serializers.Field):
    """`xray`: true/false or a subgraph depth."""

    def to_internal_value(self, data: Any) -> bool | int:
        text = str(data).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        if text.isdigit():
            return int(text)
        raise serializers.ValidationError("Must be true, false or a non-negative integer.")


class GraphQuerySerializer(RequestSerializer):
    xray = XrayField(required=False, default=False)


class SubgraphsQuerySerializer(RequestSerializer):
    recurse = serializers.BooleanField(required=False, default=False)
