"""Request bodies and queries of the assistant endpoints."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deerflow_site.api.pagination import LimitOffsetSerializer
from deerflow_site.api.query import QUERY_BOOLEANS, QueryBooleanField
from deerflow_site.api.serializers import (
    INTEGER_PATTERN,
    BoundedIntegerField,
    BoundedListField,
    JSONObjectField,
    RequestSerializer,
    StrictCharField,
)
from runs.assistants.selectors import ASSISTANT_FIELDS, SORT_FIELDS


class AssistantCountSerializer(RequestSerializer):
    graph_id = StrictCharField(required=False, allow_null=True, allow_blank=True)
    name = StrictCharField(required=False, allow_null=True, allow_blank=True)
    metadata = JSONObjectField(required=False, allow_null=True)


class AssistantSearchSerializer(AssistantCountSerializer, LimitOffsetSerializer):
    sort_by = serializers.ChoiceField(choices=SORT_FIELDS, required=False, allow_null=True)
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False, allow_null=True)
    select = BoundedListField(
        child=serializers.ChoiceField(choices=ASSISTANT_FIELDS), required=False, allow_null=True
    )


class VersionsSerializer(LimitOffsetSerializer):
    metadata = JSONObjectField(required=False, allow_null=True)


class SetLatestSerializer(RequestSerializer):
    version = BoundedIntegerField()


#: The deepest subgraph level a drawing may expand.
MAX_XRAY_DEPTH = 100
#: The words of QUERY_BOOLEANS, as the SDKs and the reference spell them: its digits are depths.
XRAY_BOOLEANS = {
    text: value for text, value in QUERY_BOOLEANS.items() if not INTEGER_PATTERN.fullmatch(text)
}


@extend_schema_field({"oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0}]})
class XrayField(serializers.Field):
    """`xray`: true/false or a subgraph depth (0..MAX_XRAY_DEPTH)."""

    def to_internal_value(self, data: Any) -> bool | int:
        if isinstance(data, bool):
            return data
        text = str(data)
        if text in XRAY_BOOLEANS:
            return XRAY_BOOLEANS[text]
        if INTEGER_PATTERN.fullmatch(text) and 0 <= int(text) <= MAX_XRAY_DEPTH:
            return int(text)
        raise serializers.ValidationError("Must be true, false or a non-negative integer.")


class GraphQuerySerializer(RequestSerializer):
    xray = XrayField(required=False, default=False)


class SubgraphsQuerySerializer(RequestSerializer):
    recurse = QueryBooleanField(required=False, default=False)


class AssistantSerializer(serializers.Serializer):
    """The SDK's `Assistant`: one per registered graph (only the `select`ed fields, if given)."""

    assistant_id = serializers.UUIDField(read_only=True, help_text="uuid5 of the graph id")
    graph_id = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True, allow_null=True)
    config = serializers.DictField(read_only=True)
    context = serializers.DictField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    metadata = serializers.DictField(read_only=True)
    version = serializers.IntegerField(read_only=True)
