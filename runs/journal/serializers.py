"""Query parameters and response shapes of the journal endpoints."""

from typing import Any

from rest_framework import serializers

from deerflow_site.api.query import QueryBooleanField
from deerflow_site.api.serializers import BoundedIntegerField, RequestSerializer, StrictCharField
from runs.journal.catalog import EventCategory, EventType, parse_event_types
from runs.journal.selectors import Window

MESSAGES_LIMIT_MAX = 200
MESSAGES_LIMIT_DEFAULT = 50
EVENTS_LIMIT_MAX = 2000
EVENTS_LIMIT_DEFAULT = 500


class MessagesQuerySerializer(RequestSerializer):
    """`?limit (1..200, default 50)&before_seq&after_seq` of the message pages."""

    limit = BoundedIntegerField(
        min_value=1, max_value=MESSAGES_LIMIT_MAX, default=MESSAGES_LIMIT_DEFAULT
    )
    before_seq = BoundedIntegerField(min_value=0, required=False)
    after_seq = BoundedIntegerField(min_value=0, required=False)

    @staticmethod
    def window(data: dict[str, Any]) -> Window:
        return Window(
            limit=data["limit"], before_seq=data.get("before_seq"), after_seq=data.get("after_seq")
        )


class EventsQuerySerializer(RequestSerializer):
    """`?event_types=a,b&limit (1..2000, default 500)&after_seq` of a run's events."""

    limit = BoundedIntegerField(
        min_value=1, max_value=EVENTS_LIMIT_MAX, default=EVENTS_LIMIT_DEFAULT
    )
    after_seq = BoundedIntegerField(min_value=0, required=False)
    event_types = StrictCharField(
        required=False,
        allow_blank=True,
        help_text="Comma-separated catalog names (legacy human_message, ai_message and "
        "tool_message are accepted).",
    )

    def validate_event_types(self, value: str) -> list[str]:
        return parse_event_types(value)


class TokenUsageQuerySerializer(RequestSerializer):
    """`?include_active=true|false` of a thread's token usage."""

    include_active = QueryBooleanField(default=False)


class RunEventSerializer(serializers.Serializer):
    """One journal event (for the schema; views return the selectors' dicts)."""

    seq = BoundedIntegerField()
    thread_id = serializers.CharField()
    run_id = serializers.UUIDField()
    event_type = serializers.ChoiceField(choices=EventType.choices)
    category = serializers.ChoiceField(choices=EventCategory.choices)
    content = serializers.JSONField(allow_null=True)
    metadata = serializers.JSONField()
    created_at = serializers.DateTimeField()


class MessageFeedbackSerializer(serializers.Serializer):
    feedback_id = serializers.UUIDField()
    rating = BoundedIntegerField()
    comment = serializers.CharField()


class ThreadMessageSerializer(RunEventSerializer):
    """A message event; the last AI message of each run also carries the caller's feedback."""

    feedback = MessageFeedbackSerializer(allow_null=True, required=False)


class RunMessagesPageSerializer(serializers.Serializer):
    data = RunEventSerializer(many=True)
    has_more = serializers.BooleanField()


class ModelTokenUsageSerializer(serializers.Serializer):
    input_tokens = BoundedIntegerField()
    output_tokens = BoundedIntegerField()
    total_tokens = BoundedIntegerField()
    runs = BoundedIntegerField()


class TokenUsageSerializer(serializers.Serializer):
    thread_id = serializers.CharField()
    total_input_tokens = BoundedIntegerField()
    total_output_tokens = BoundedIntegerField()
    total_tokens = BoundedIntegerField()
    total_runs = BoundedIntegerField()
    by_model = serializers.DictField(child=ModelTokenUsageSerializer())
