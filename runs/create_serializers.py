"""Run create bodies: the stream modes, the fields of `POST …/runs[/stream|/wait]` and
`/runs/batch`, and their parse into the admission's `RunRequest`."""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deerflow_site.api import parsers
from deerflow_site.api.checkpoints import (
    CHECKPOINT_KEYS,
    CheckpointField,
    CheckpointReferenceError,
    parse_checkpoint,
)
from deerflow_site.api.schema import error
from deerflow_site.api.serializers import (
    BoundedListField,
    CheckpointIdField,
    JSONObjectField,
    RequestSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    request_data,
)
from deerflow_site.errors import Invalid
from runs.admission import RunRequest
from runs.exceptions import ResumeWithoutThread, WebhookRefused
from runs.models import Run
from runs.webhooks import parse_webhook_url
from threads.services import clean_metadata

#: Stream modes as clients name them (`messages-tuple` is LangGraph's `messages`).
STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "events",
    "debug",
    "tasks",
    "checkpoints",
    "tools",
)
#: Modes the official SDKs know but this server does not produce: a 422, never silently ignored.
UNSUPPORTED_STREAM_MODES = ("lifecycle",)
#: `GET /threads/{id}/stream` modes: every run mode, or only the runs' start and end.
THREAD_STREAM_MODES = ("run_modes", "lifecycle")
COMMAND_KEYS = ("resume", "goto", "update")


def parse_stream_modes(value: Any, *, allowed: tuple[str, ...] = STREAM_MODES) -> list[str]:
    """Stream modes from a string, a list, or a JSON-array string; unknown ones are a 422."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = parsers.loads(value)
        except ValueError:
            raise Invalid({"stream_mode": ["Malformed JSON array."]}) from None
    modes = [value] if isinstance(value, str) else value
    if not isinstance(modes, list) or not all(isinstance(mode, str) for mode in modes):
        raise Invalid({"stream_mode": ["Must be a string or a list of strings."]})
    for mode in modes:
        if mode in allowed:
            continue
        if mode in UNSUPPORTED_STREAM_MODES:
            raise Invalid({"stream_mode": [f"Stream mode {mode!r} is not supported here."]})
        raise Invalid({"stream_mode": [f"Unknown stream mode {mode!r}."]})
    return list(dict.fromkeys(modes))


STRING_OR_LIST = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


@extend_schema_field(STRING_OR_LIST)
class StreamModeField(serializers.Field):
    """One stream mode or a list of them."""

    def to_internal_value(self, data: Any) -> list[str]:
        try:
            return parse_stream_modes(data) or ["values"]
        except Invalid as exc:
            raise serializers.ValidationError(exc.detail["stream_mode"]) from None


@extend_schema_field(STRING_OR_LIST)
class InterruptNodesField(serializers.Field):
    """Node names to stop at, or `"*"` for every node."""

    def to_internal_value(self, data: Any) -> str | list[str]:
        if data == "*":
            return data
        if isinstance(data, list) and all(isinstance(node, str) for node in data):
            return data
        raise serializers.ValidationError('Must be "*" or a list of node names.')


class CommandField(JSONObjectField):
    """A LangGraph `Command`: `{resume?, goto?, update?}`."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        unknown = sorted(set(value) - set(COMMAND_KEYS))
        if unknown:
            raise serializers.ValidationError(f"Unknown command keys: {', '.join(unknown)}.")
        if value and all(value.get(key) is None for key in COMMAND_KEYS):
            # LangGraph fails such a run with an UnboundLocalError of its own.
            raise serializers.ValidationError("A command needs a resume, goto or update value.")
        goto = value.get("goto")
        targets = goto if isinstance(goto, list) else [goto]
        if goto is not None and not all(_is_goto_target(target) for target in targets):
            raise serializers.ValidationError(
                'goto must be a node name, a Send {"node", "input"}, or a list of them.'
            )
        update = value.get("update")
        if update is not None and not isinstance(update, dict | list):
            raise serializers.ValidationError("update must be an object or a list of pairs.")
        return value


def _is_goto_target(target: Any) -> bool:
    if isinstance(target, str):
        return True
    return isinstance(target, dict) and isinstance(target.get("node"), str)


def _positive_integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


#: The RunnableConfig keys a client may set, each with its check and the message of a 422: every
#: key the executor passes on to the graph (a value of another type failed the run instead).
CONFIG_KEY_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "configurable": (lambda value: isinstance(value, dict), "Must be a JSON object."),
    "metadata": (lambda value: isinstance(value, dict), "Must be a JSON object."),
    "tags": (
        lambda value: isinstance(value, list) and all(isinstance(tag, str) for tag in value),
        "Must be a list of strings.",
    ),
    "run_name": (lambda value: isinstance(value, str), "Must be a string."),
    "recursion_limit": (_positive_integer, "Must be a positive integer."),
    "max_concurrency": (_positive_integer, "Must be a positive integer."),
}


class RunConfigField(JSONObjectField):
    """A RunnableConfig; `configurable` keys starting with `__` are the server's and dropped.
    The keys of CONFIG_KEY_CHECKS, when not null, must pass their check (422 naming the key)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        for key, (check, message) in CONFIG_KEY_CHECKS.items():
            if value.get(key) is not None and not check(value[key]):
                raise serializers.ValidationError({key: message})
        configurable = value.get("configurable")
        if configurable is not None:
            value["configurable"] = {
                key: item for key, item in configurable.items() if not key.startswith("__")
            }
        return value


class WebhookURLField(serializers.CharField):
    """An http(s) URL without credentials; where it points is checked at admission."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        try:
            return str(parse_webhook_url(data))
        except WebhookRefused as exc:
            raise serializers.ValidationError(exc.detail["webhook"]) from None


class RunMetadataField(JSONObjectField):
    """Run metadata: `owner_id`/`user_id` are stripped, `auth_token` is refused."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if "auth_token" in value:
            raise serializers.ValidationError("auth_token must not be sent in metadata.")
        return clean_metadata(value)


#: What admitting a run can answer besides its run, as the API documents it.
ADMISSION_ERRORS = {
    404: error("Thread or assistant not found."),
    409: error("Thread busy (multitask_strategy=reject), or the thread id is taken."),
    429: error("A limit on runs was reached; `detail` names it."),
}


class RunCreateSerializer(RequestSerializer):
    """The create body of `POST /threads/{t}/runs`, `/runs/stream` and `/runs/wait`."""

    assistant_id = StrictCharField(
        max_length=255, trim_whitespace=False, required=False, allow_null=True
    )
    input = serializers.JSONField(required=False, allow_null=True)
    command = CommandField(required=False, allow_null=True)
    metadata = RunMetadataField(required=False, allow_null=True)
    config = RunConfigField(required=False, allow_null=True)
    context = JSONObjectField(required=False, allow_null=True)
    webhook = WebhookURLField(required=False, allow_null=True)
    checkpoint_id = CheckpointIdField(required=False, allow_null=True)
    checkpoint = CheckpointField(required=False, allow_null=True)
    interrupt_before = InterruptNodesField(required=False, allow_null=True)
    interrupt_after = InterruptNodesField(required=False, allow_null=True)
    stream_mode = StreamModeField(required=False, allow_null=True)
    stream_subgraphs = StrictBooleanField(required=False, allow_null=True)
    stream_resumable = StrictBooleanField(required=False, allow_null=True)
    on_disconnect = StrictChoiceField(
        choices=Run.OnDisconnect.choices, required=False, allow_null=True
    )
    on_completion = StrictChoiceField(
        choices=Run.OnCompletion.choices, required=False, allow_null=True
    )
    multitask_strategy = StrictChoiceField(
        choices=Run.MultitaskStrategy.choices, required=False, allow_null=True
    )
    after_seconds = StrictFloatField(min_value=0, required=False, allow_null=True)
    if_not_exists = StrictChoiceField(choices=["create", "reject"], required=False, allow_null=True)
    feedback_keys = BoundedListField(
        child=StrictCharField(max_length=255), required=False, allow_null=True
    )
    durability = StrictChoiceField(
        choices=["sync", "async", "exit"], required=False, allow_null=True
    )
    checkpoint_during = StrictBooleanField(required=False, allow_null=True)
    strict_resume = StrictBooleanField(required=False, allow_null=True)
    langsmith_tracer = serializers.JSONField(required=False, allow_null=True)
    # No LangSmith here: a tracer asked for is refused rather than silently not used.
    unsupported_fields = ("langsmith_tracer",)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("durability") is not None and attrs.get("checkpoint_during") is not None:
            raise serializers.ValidationError(
                {"checkpoint_during": ["Send durability or checkpoint_during, not both."]}
            )
        attrs["config"], in_config = _checkpoint_out_of_config(attrs.get("config"))
        if in_config and attrs.get("checkpoint") is None and attrs.get("checkpoint_id") is None:
            attrs["checkpoint"] = in_config
        return attrs


def _checkpoint_out_of_config(
    config: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """`config` without the checkpoint keys of its `configurable`, and the checkpoint they name
    (`{}`: none). A run starts from a checkpoint only through `checkpoint` / `checkpoint_id`,
    which admission checks (one of this thread's, else a 404 or 400); LangGraph read the config's
    own unchecked, and an id naming no checkpoint started the thread over from an empty state."""
    configurable = (config or {}).get("configurable") or {}
    if configurable.get("checkpoint_id") is None:
        return config, {}
    try:
        checkpoint = parse_checkpoint(configurable)
    except CheckpointReferenceError as exc:
        raise serializers.ValidationError({"config": [f"configurable: {exc}"]}) from None
    rest = {key: value for key, value in configurable.items() if key not in CHECKPOINT_KEYS}
    return {**config, "configurable": rest}, checkpoint  # type: ignore[dict-item]


def parse_run_create(
    data: Any, *, on_completion: Run.OnCompletion = Run.OnCompletion.KEEP
) -> RunRequest:
    """A create body as a RunRequest; a 422 naming the field when it is not valid."""
    validated = request_data(RunCreateSerializer, data)
    body = {key: value for key, value in validated.items() if value is not None}
    durability = body.get("durability")
    if durability is None and body.get("checkpoint_during") is not None:
        # LangGraph's older spelling: checkpoints during the run (async) or only at its exit.
        durability = "async" if body["checkpoint_during"] else "exit"
    checkpoint = body.get("checkpoint")
    checkpoint_id = body.get("checkpoint_id") or (checkpoint or {}).get("checkpoint_id")
    resumable = body.get("stream_resumable", False)
    on_disconnect = body.get("on_disconnect", Run.OnDisconnect.CANCEL)
    after_seconds = body.get("after_seconds", 0.0)
    kwargs = {
        "input": body.get("input"),
        "command": body.get("command"),
        "config": body.get("config", {}),
        "context": body.get("context"),
        "stream_mode": body.get("stream_mode", ["values"]),
        "subgraphs": body.get("stream_subgraphs", False),
        "interrupt_before": body.get("interrupt_before"),
        "interrupt_after": body.get("interrupt_after"),
        "checkpoint_id": checkpoint_id,
        "checkpoint": checkpoint,
        "durability": durability,
        "webhook": body.get("webhook"),
        "feedback_keys": body.get("feedback_keys"),
        "strict_resume": body.get("strict_resume", False),
        "resumable": resumable,
        "on_disconnect": on_disconnect,
        "after_seconds": after_seconds,
    }
    return RunRequest(
        assistant_id=body.get("assistant_id"),
        metadata=body.get("metadata", {}),
        multitask_strategy=body.get("multitask_strategy", Run.MultitaskStrategy.REJECT),
        if_not_exists=body.get("if_not_exists", "create"),
        on_disconnect=on_disconnect,
        on_completion=body.get("on_completion", on_completion),
        after_seconds=after_seconds,
        resumable=resumable,
        checkpoint_id=checkpoint_id,
        checkpoint=checkpoint,
        kwargs=kwargs,
    )


def parse_stateless_run_create(data: Any) -> RunRequest:
    """A stateless run's create body: its new thread is created for it, and deleted after it
    unless `on_completion` says `keep`. A `command.resume` is a 400: a new thread has no
    interrupt to resume."""
    request = parse_run_create(data, on_completion=Run.OnCompletion.DELETE)
    if "resume" in (request.kwargs.get("command") or {}):
        raise ResumeWithoutThread()
    return replace(request, if_not_exists="create")
