"""Feedback request and response bodies."""

from typing import Any

from rest_framework import serializers

from deerflow_site.api.serializers import (
    BoundedIntegerField,
    RequestSerializer,
    StrictCharField,
)
from feedback.models import Feedback


class RatingField(serializers.IntegerField):
    """+1 or -1, as a JSON number (a string or boolean is a 422 too)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise serializers.ValidationError("Must be 1 or -1.")
        if data not in Feedback.Rating.values:
            raise serializers.ValidationError("Must be 1 or -1.")
        return data


class FeedbackRequestSerializer(RequestSerializer):
    """`{rating: 1|-1, comment?, message_id?}`."""

    rating = RatingField()
    comment = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=10000)
    message_id = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255)


class FeedbackSerializer(serializers.Serializer):
    """Feedback as the API shows it (`user` is the user's id; empty texts are null)."""

    feedback_id = serializers.UUIDField()
    run_id = serializers.UUIDField()
    thread_id = serializers.CharField()
    user = serializers.CharField(source="user_id")
    rating = BoundedIntegerField()
    comment = serializers.SerializerMethodField()
    message_id = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_comment(self, feedback: Feedback) -> str | None:
        return feedback.comment or None

    def get_message_id(self, feedback: Feedback) -> str | None:
        return feedback.message_id or None


class FeedbackStatsSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    total = BoundedIntegerField()
    positive = BoundedIntegerField()
    negative = BoundedIntegerField()
