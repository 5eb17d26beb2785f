"""The one parser of checkpoint references in request bodies and query strings.

The SDKs name a checkpoint in three ways, and every endpoint taking one accepts all three: a
`Checkpoint` object `{thread_id?, checkpoint_ns?, checkpoint_id?, checkpoint_map?}` (Python SDK),
a config whose `configurable` holds those keys (the JS SDK's `before` in history), or a bare
checkpoint id string (Python SDK's `before`, `?before=` on GET). Used by run create
(`checkpoint`), state at a checkpoint, state update and history (`before`, `checkpoint`).
"""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deerflow_site.api import parsers
from deerflow_site.api.ids import parse_uuid, validate_thread_id

CHECKPOINT_KEYS = ("thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map")

CHECKPOINT_SCHEMA = {
    # anyOf: an object of the first form also matches the second, which oneOf would refuse.
    "anyOf": [
        {
            "type": "object",
            "properties": {
                "thread_id": {"type": "string"},
                "checkpoint_ns": {"type": "string"},
                "checkpoint_id": {"type": "string", "format": "uuid"},
                "checkpoint_map": {"type": "object"},
            },
        },
        {"type": "object", "properties": {"configurable": {"type": "object"}}},
        {"type": "string", "format": "uuid"},
    ]
}


class CheckpointReferenceError(ValueError):
    """A value that names no checkpoint in any form the server accepts."""


def parse_checkpoint(value: Any, *, require_id: bool = False) -> dict[str, Any]:
    """A checkpoint reference as a `Checkpoint` dict holding only the keys given.

    `value`: a Checkpoint object, a config `{"configurable": {...}}`, a checkpoint id string, or a
    JSON text of either object (a query string's). Ids are UUIDs; `thread_id` a thread id.
    Raises CheckpointReferenceError naming what is wrong; with `require_id`, also when no
    `checkpoint_id` is given.
    """
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = parsers.loads(value)
        except ValueError:
            raise CheckpointReferenceError("Malformed JSON object.") from None
    if isinstance(value, str):
        value = {"checkpoint_id": value}
    if not isinstance(value, dict):
        raise CheckpointReferenceError(
            "Must be a checkpoint id, a checkpoint object or a config with `configurable`."
        )
    if "configurable" in value:
        value = value["configurable"]
        if not isinstance(value, dict):
            raise CheckpointReferenceError("`configurable` must be a JSON object.")
    checkpoint = {key: value[key] for key in CHECKPOINT_KEYS if value.get(key) is not None}
    for key in ("thread_id", "checkpoint_ns", "checkpoint_id"):
        if key in checkpoint and not isinstance(checkpoint[key], str):
            raise CheckpointReferenceError(f"`{key}` must be a string.")
    if "checkpoint_map" in checkpoint and not isinstance(checkpoint["checkpoint_map"], dict):
        raise CheckpointReferenceError("`checkpoint_map` must be a JSON object.")
    if "thread_id" in checkpoint:
        try:
            checkpoint["thread_id"] = validate_thread_id(checkpoint["thread_id"])
        except Exception:
            raise CheckpointReferenceError("`thread_id` must be a thread id.") from None
    if "checkpoint_id" in checkpoint:
        parsed = parse_uuid(checkpoint["checkpoint_id"])
        if parsed is None:
            raise CheckpointReferenceError("`checkpoint_id` must be a checkpoint id (a UUID).")
        checkpoint["checkpoint_id"] = str(parsed)
    elif require_id:
        raise CheckpointReferenceError("Names no checkpoint: a `checkpoint_id` is required.")
    return checkpoint


@extend_schema_field(CHECKPOINT_SCHEMA)
class CheckpointField(serializers.Field):
    """A checkpoint reference in any form the SDKs send (see `parse_checkpoint`); with
    `require_id`, one that names a checkpoint id."""

    def __init__(self, *, require_id: bool = False, **kwargs: Any) -> None:
        self.require_id = require_id
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        try:
            return parse_checkpoint(data, require_id=self.require_id)
        except CheckpointReferenceError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: Any) -> Any:
        return value
