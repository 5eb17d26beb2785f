"""`deerflow_site.api.parsers.loads` decides as Python's decoder with the bounds' hooks does, and
its depth check holds at the limit, whatever brackets strings hold (its counting short cut)."""

import json

import pytest

from deerflow_site.api import parsers


def reference_loads(text: str) -> object:
    """What `loads` decodes to: `json.loads` with the bounds' hooks, made per call."""
    return json.loads(
        text,
        parse_int=parsers._bounded_int,
        parse_float=parsers._finite_float,
        parse_constant=parsers._refuse_constant,
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"assistant_id": "bench", "input": {"text": "c1-2"}}',
        '[1, -2, 3.5, 1e3, true, false, null, "\\u00e9", {"a": [[]]}]',
        '"[[[[{{{{"',
        "  {}  ",
        "0",
        str(parsers.MAX_INTEGER),
    ],
)
def test_values_decode_as_the_hooked_decoder_does(text: str) -> None:
    assert parsers.loads(text) == reference_loads(text)
    assert parsers.loads(text.encode()) == reference_loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[1,]",
        "{'a': 1}",
        "NaN",
        "[Infinity]",
        str(parsers.MAX_INTEGER + 1),
        "1e999",
        "\ufeff{}",  # a byte order mark before the JSON
    ],
)
def test_refused_values_raise_value_error_as_the_hooked_decoder_does(text: str) -> None:
    """With the same message: the client reads it in the 4xx's detail."""
    with pytest.raises(ValueError) as expected:
        reference_loads(text)
    with pytest.raises(ValueError) as refused:
        parsers.loads(text)
    assert str(refused.value) == str(expected.value)


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_depth_at_the_limit_is_decoded_and_one_more_is_refused(settings) -> None:
    limit = settings.MAX_JSON_DEPTH
    assert parsers.loads(nested(limit)) == reference_loads(nested(limit))
    with pytest.raises(ValueError, match="nested deeper"):
        parsers.loads(nested(limit + 1))


def test_brackets_inside_strings_count_for_no_depth(settings) -> None:
    """More opening brackets than levels, most of them in strings: scanned, and decoded."""
    limit = settings.MAX_JSON_DEPTH
    text = json.dumps({"a": "[{" * limit, "b": [[["x"]]]})
    assert parsers.loads(text) == {"a": "[{" * limit, "b": [[["x"]]]}
    deep_with_strings = '{"a": ' * (limit + 1) + '"[[{{"' + "}" * (limit + 1)
    with pytest.raises(ValueError, match="nested deeper"):
        parsers.loads(deep_with_strings)


def test_few_brackets_are_not_scanned(settings) -> None:
    """No more opening brackets than levels: the answer needs no scan (they bound the depth)."""
    limit = settings.MAX_JSON_DEPTH
    parsers.check_depth("[" * limit + "]" * limit, limit)
    with pytest.raises(ValueError):
        parsers.check_depth("[" * (limit + 1) + "]" * (limit + 1), limit)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"input": 1, "input": 2}', '"input"'),
        ('{"input": {"messages": [], "messages": [{"role": "user"}]}}', '"messages"'),
        ('[{"a": 1}, {"b": 1, "c": 2, "b": 3}]', '"b"'),
        ('{"\\ud800": 1, "\\ud800": 2}', '"\\ud800"'),  # named ASCII-escaped: no bad UTF-8
        ('{"\\u00e9": 1, "é": 2}', '"\\u00e9"'),  # one key, written two ways
    ],
)
def test_a_key_given_twice_in_one_object_is_refused_naming_it(text: str, named: str) -> None:
    """Python's decoder would keep the last value; a parser in front of the server may keep the
    first: one body, two meanings. Refused instead, naming the key."""
    with pytest.raises(ValueError, match="duplicate key") as refused:
        parsers.loads(text)
    assert named in str(refused.value)
    str(refused.value).encode("ascii")


def test_a_key_in_several_objects_is_no_duplicate() -> None:
    text = '{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}], "c": {}}'
    assert parsers.loads(text) == reference_loads(text)
