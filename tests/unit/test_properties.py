"""Property tests of task argument encoding (qsup.encoding). Policies and settings have their
own property tests (test_policy.py, test_settings.py); the pipe messages are exercised by real
workers (test_worker_mailbox.py, the e2e tests) rather than by pickling them here."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsup.encoding import encode_arguments, to_json
from qsup.errors import TaskDefinitionError

BIG = 10**9  # a size limit nothing here reaches

# --- strategies -------------------------------------------------------------------------------

# jsonb stores neither NUL nor lone surrogates (both are refused, see the tests below)
json_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | json_text
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(json_text, inner, max_size=5),
    max_leaves=25,
)
json_kwargs = st.dictionaries(json_text, json_values, max_size=5)


class Opaque:
    """An object JSON has no representation for."""


not_json_leaves = st.one_of(
    st.builds(Opaque),
    st.sets(st.integers(), min_size=0, max_size=3),
    st.frozensets(st.integers(), max_size=3),
    st.binary(max_size=8),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.just(len),  # a function
    st.builds(object),
    st.datetimes(),
    st.uuids(),
)


@st.composite
def json_with_one_bad_leaf(draw: st.DrawFn) -> Any:
    """A JSON value with one non-JSON value buried somewhere inside."""
    bad = draw(not_json_leaves)
    depth = draw(st.integers(0, 3))
    value: Any = bad
    for _ in range(depth):
        if draw(st.booleans()):
            items = draw(st.lists(json_values, max_size=3))
            items.insert(draw(st.integers(0, len(items))), value)
            value = items
        else:
            value = {
                **draw(st.dictionaries(json_text, json_values, max_size=3)),
                draw(json_text): value,
            }
    return value


# --- encoding ---------------------------------------------------------------------------------


@given(st.lists(json_values, max_size=6), json_kwargs)
def test_json_arguments_round_trip(args: list[Any], kwargs: dict[str, Any]) -> None:
    args_json, kwargs_json = encode_arguments(tuple(args), kwargs, BIG)
    assert json.loads(args_json) == args
    assert json.loads(kwargs_json) == kwargs


@given(json_values)
def test_to_json_round_trips_and_is_strict_json(value: Any) -> None:
    text = to_json(value, "the value")
    assert json.loads(text) == value
    # strict: no NaN/Infinity tokens, so PostgreSQL's jsonb accepts it
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


@given(json_with_one_bad_leaf(), st.booleans())
def test_non_json_arguments_raise_task_definition_error(value: Any, as_kwarg: bool) -> None:
    args, kwargs = ((), {"x": value}) if as_kwarg else ((value,), {})
    with pytest.raises(TaskDefinitionError) as info:
        encode_arguments(args, kwargs, BIG)
    assert "JSON" in str(info.value)
    assert ("keyword" in str(info.value)) == as_kwarg


@given(json_with_one_bad_leaf())
def test_non_json_results_raise_task_definition_error_naming_the_value(value: Any) -> None:
    with pytest.raises(TaskDefinitionError, match="the result of app:job"):
        to_json(value, "the result of app:job")


@given(st.lists(json_values, max_size=6), json_kwargs)
def test_size_limit_is_exact_in_utf8_bytes(args: list[Any], kwargs: dict[str, Any]) -> None:
    args_json, kwargs_json = encode_arguments(tuple(args), kwargs, BIG)
    size = len(args_json.encode()) + len(kwargs_json.encode())
    assert encode_arguments(tuple(args), kwargs, size) == (args_json, kwargs_json)
    with pytest.raises(TaskDefinitionError, match="QUEUE_MAX_ARGS_BYTES") as info:
        encode_arguments(tuple(args), kwargs, size - 1)
    assert str(size) in str(info.value)


@given(
    st.text(
        st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
        min_size=1,
        max_size=50,
    )
)
def test_size_limit_counts_bytes_not_characters(text: str) -> None:
    encoded = len(json.dumps([text], ensure_ascii=False, separators=(",", ":")).encode()) + 2
    encode_arguments((text,), {}, encoded)
    with pytest.raises(TaskDefinitionError):
        encode_arguments((text,), {}, encoded - 1)


@pytest.mark.parametrize(
    "value", [{1: "x"}, {True: 1}, {None: 2}, {1.5: [3]}, {"ok": {2: "nested"}}, [{"a": 1}, {3: 4}]]
)
def test_dicts_with_non_string_keys_are_refused(value: Any) -> None:
    with pytest.raises(TaskDefinitionError):
        encode_arguments((value,), {}, BIG)


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800", {"k\x00": 1}])
def test_text_postgres_cannot_store_is_refused(bad: Any) -> None:
    with pytest.raises(TaskDefinitionError):
        encode_arguments((bad,), {}, BIG)
