"""A create body (a run's, a thread's) validated the quick way
(`RequestSerializer.quickly_validated`) gives exactly what the serializer gives, defaults
included, and every body it does not take goes to the serializer, whose 422 is unchanged:
checked on bodies made of the create serializers' own fields, unknown ones, and values of every
JSON type, valid and not."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from deerflow_site.api.serializers import request_data
from runs.create_serializers import STREAM_MODES, RunCreateSerializer, parse_run_create
from runs.models import Run
from threads.serializers import ThreadCreateSerializer

FIELDS = sorted(RunCreateSerializer().fields)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text()
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
#: Values each field is likely to take, and to refuse: the quick way must see both.
PLAUSIBLE = st.sampled_from(
    [
        "echo",
        "",
        " echo ",
        "x" * 256,
        "a\x00b",
        "\ud800",
        "values",
        [*STREAM_MODES[:3]],
        ["values", "lifecycle"],
        "*",
        ["node"],
        *Run.MultitaskStrategy.values,
        *Run.OnDisconnect.values,
        "create",
        "reject",
        "sync",
        0,
        -1,
        1.5,
        True,
        {},
        {"recursion_limit": 5},
        {"recursion_limit": 0},
        {"configurable": {"__secret": 1, "model": "m"}},
        {"tags": ["a", 1]},
        {"resume": "yes"},
        {"goto": 3},
        {"owner_id": "me", "k": "v"},
        {"auth_token": "t"},
        "https://example.com/hook",
        "ftp://example.com",
        "1ef4b6c2-0a6e-6a5e-8000-1f0c0b5f8a11",
        {"checkpoint_id": "1ef4b6c2-0a6e-6a5e-8000-1f0c0b5f8a11"},
    ]
)
KEYS = st.sampled_from([*FIELDS, "unknown_field", "raise_error"])
BODIES = st.dictionaries(KEYS, PLAUSIBLE | JSON, max_size=6)


def _full(data: Any, serializer_class: Any = RunCreateSerializer) -> tuple[str, Any]:
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return "valid", dict(serializer.validated_data)
    return "invalid", serializer.errors


@settings(max_examples=600, deadline=None)
@given(BODIES)
def test_the_quick_way_agrees_with_the_serializer(body: dict[str, Any]) -> None:
    quick = RunCreateSerializer.quickly_validated(_copy(body))
    verdict, full = _full(_copy(body))
    if quick is not None:
        assert verdict == "valid"
        assert quick == full
    assert request_data_or_errors(body) == (verdict, full)


def request_data_or_errors(
    body: dict[str, Any], serializer_class: Any = RunCreateSerializer
) -> tuple[str, Any]:
    try:
        return "valid", request_data(serializer_class, _copy(body))
    except serializers.ValidationError as exc:
        return "invalid", exc.detail


def _copy(value: Any) -> Any:
    """A fresh copy: a field may rewrite what it is given (config's `__` keys)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


@pytest.mark.parametrize(
    "body",
    [
        {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]}},
        {"assistant_id": "echo", "stream_mode": ["values", "messages-tuple"], "config": {}},
        {"assistant_id": "echo", "on_disconnect": "continue", "stream_resumable": True},
        {"assistant_id": "echo", "multitask_strategy": "enqueue", "metadata": {"k": "v"}},
    ],
)
def test_the_bodies_the_sdks_send_go_the_quick_way(body: dict[str, Any]) -> None:
    assert RunCreateSerializer.quickly_validated(_copy(body)) is not None
    assert parse_run_create(_copy(body)) is not None


@pytest.mark.parametrize(
    "body",
    [
        {"assistant_id": "echo", "unknown_field": 1},  # logged by the serializer
        {"assistant_id": "echo", "langsmith_tracer": {}},  # unsupported: a 422
        {"assistant_id": 5},
        {"durability": "sync", "checkpoint_during": True},  # the body-wide rule
        [],
    ],
)
def test_other_bodies_go_to_the_serializer(body: Any) -> None:
    assert RunCreateSerializer.quickly_validated(body) is None


THREAD_FIELDS = sorted(ThreadCreateSerializer().fields)
THREAD_VALUES = st.sampled_from(
    [
        None,
        "",
        "raise",
        "do_nothing",
        "update",
        "1ef4b6c2-0a6e-6a5e-8000-1f0c0b5f8a11",
        "my-thread_1",
        "x" * 65,
        "search",
        "a b",
        {},
        {"owner_id": "me", "k": "v"},
        {"ttl": 5},
        {"ttl": 5, "strategy": "keep_latest"},
        [{"updates": []}],
        0,
        -1,
        5,
        1.5,
        10**12,
        True,
    ]
)
THREAD_BODIES = st.dictionaries(
    st.sampled_from([*THREAD_FIELDS, "unknown_field"]), THREAD_VALUES | JSON, max_size=4
)


@settings(max_examples=400, deadline=None)
@given(THREAD_BODIES)
def test_a_thread_create_body_the_quick_way_agrees_with_the_serializer(
    body: dict[str, Any],
) -> None:
    quick = ThreadCreateSerializer.quickly_validated(_copy(body))
    verdict, full = _full(_copy(body), ThreadCreateSerializer)
    if quick is not None:
        assert verdict == "valid"
        assert quick == full
    assert request_data_or_errors(body, ThreadCreateSerializer) == (verdict, full)


@pytest.mark.parametrize(
    "body",
    [
        {},  # what `client.threads.create()` sends
        {"metadata": {"k": "v"}},
        {"thread_id": "1ef4b6c2-0a6e-6a5e-8000-1f0c0b5f8a11", "if_exists": "do_nothing"},
        {"ttl": 30},
    ],
)
def test_the_thread_create_bodies_the_sdks_send_go_the_quick_way(body: dict[str, Any]) -> None:
    quick = ThreadCreateSerializer.quickly_validated(_copy(body))
    assert quick is not None
    assert quick == _full(_copy(body), ThreadCreateSerializer)[1]
    assert quick["if_exists"] == body.get("if_exists", "raise")  # the default, given
