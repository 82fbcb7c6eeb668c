"""Property tests: task argument encoding (qsup.encoding) and supervisor/worker messages
(qsup.protocol). Policies and settings have their own property tests (test_policy.py,
test_settings.py)."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsup import protocol, repo
from qsup.encoding import encode_arguments, to_json
from qsup.errors import TaskDefinitionError

BIG = 10**9  # a size limit nothing here reaches

# --- strategies -------------------------------------------------------------------------------

# jsonb stores neither NUL nor lone surrogates (both are refused, see the tests below)
json_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)))
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
        st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
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


# --- protocol ---------------------------------------------------------------------------------

floats = st.floats(allow_nan=False)
uuids = st.uuids()
ids = uuids.map(str)  # task ids travel between processes as text
jobs = st.builds(
    protocol.Job,
    id=ids,
    name=st.text(),
    args=st.lists(json_values, max_size=4).map(json.dumps),
    kwargs=json_kwargs.map(json.dumps),
    timeout=floats,
    attempts=st.integers(0, 2**31),
    max_retries=st.integers(0, 2**31),
    context=json_kwargs.map(json.dumps),
)
new_tasks = st.builds(
    repo.NewTask,
    id=ids,
    name=st.text(),
    args=st.lists(json_values).map(json.dumps),
    kwargs=json_kwargs.map(json.dumps),
    queue=st.text(),
    priority=st.integers(),
    delay=floats,
    eta=st.none() | st.datetimes(timezones=st.just(UTC)),
    max_retries=st.integers(),
    timeout=st.none() | floats,
    unique_key=st.none() | st.text(),
    parent=st.none() | uuids,
    depends_on=st.lists(uuids, max_size=3).map(tuple),
    context=json_kwargs.map(json.dumps),
)
finished = st.builds(
    protocol.Finished,
    task_id=ids,
    outcome=st.sampled_from(get_args(protocol.Outcome)),
    started=floats,
    done=floats,
    result=st.none() | json_values.map(json.dumps),
    error=st.none() | st.text(),
    retry_delay=st.none() | floats,
    rss=st.integers(0, 2**48),
)
# Message types the lead may add later are picked up here by name when they exist.
_results = getattr(protocol, "Results", None)
messages = st.one_of(
    jobs,
    *(
        [st.builds(_results, finished=st.lists(finished, max_size=4).map(tuple))]
        if _results
        else []
    ),
    st.builds(protocol.Assign, jobs=st.lists(jobs, max_size=4).map(tuple)),
    st.builds(protocol.Stop),
    st.builds(protocol.Ready, pid=st.integers(0, 2**22)),
    st.builds(protocol.Started, task_id=ids, at=floats),
    finished,
    st.builds(protocol.Released, task_ids=st.lists(ids, max_size=5).map(tuple)),
    st.builds(protocol.Drop, task_ids=st.lists(ids, max_size=5).map(tuple)),
    st.builds(protocol.Log, task_id=ids, type=st.text(max_size=50), message=st.text(), at=floats),
    st.builds(protocol.SaveContext, task_id=ids, context=json_kwargs.map(json.dumps)),
    st.builds(protocol.Enqueue, task=new_tasks),
)


@given(messages)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_every_message_round_trips(message: Any) -> None:
    data = protocol.encode(message)
    assert isinstance(data, bytes)
    decoded = protocol.decode(data)
    assert type(decoded) is type(message)
    assert decoded == message


@given(messages)
def test_messages_are_immutable(message: Any) -> None:
    fields = type(message)._fields
    if not fields:
        return
    name = fields[0]
    with pytest.raises(AttributeError):
        setattr(message, name, None)


def test_every_protocol_message_type_is_covered() -> None:
    """A new message type must be added to the strategy above."""
    covered = {
        protocol.Job,
        protocol.Assign,
        protocol.Stop,
        protocol.Ready,
        protocol.Started,
        protocol.Finished,
        protocol.Released,
        protocol.Drop,
        protocol.Log,
        protocol.SaveContext,
        protocol.Enqueue,
        *([_results] if _results else []),
    }
    declared = {
        v
        for v in vars(protocol).values()
        if isinstance(v, type) and v.__module__ == protocol.__name__ and hasattr(v, "_fields")
    }
    assert declared == covered


def test_an_assignment_keeps_job_order() -> None:
    jobs_ = tuple(
        protocol.Job(str(uuid.uuid4()), f"m:f{i}", f"[{i}]", "{}", 1.0, 1, 3, "{}")
        for i in range(5)
    )
    assert protocol.decode(protocol.encode(protocol.Assign(jobs_))).jobs == jobs_


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800", {"k\x00": 1}])
def test_text_postgres_cannot_store_is_refused(bad: Any) -> None:
    with pytest.raises(TaskDefinitionError):
        encode_arguments((bad,), {}, BIG)
