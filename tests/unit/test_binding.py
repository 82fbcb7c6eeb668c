"""The one check of a call against its function's signature (``qsup.binding``), and the
allow-list decision (``qsup.trust``): pure, no database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsup import Queue, TaskDefinitionError, chain, group, step
from qsup.binding import check_call
from qsup.settings import load_config
from qsup.trust import TaskGate, given_modules
from qsup.workflow import compile_workflow
from tests import tasks
from tests import workflow_tasks as wt


def plain(a, b): ...
def defaults(a, b=2, *, c=3): ...
def required_keyword(a, *, key): ...
def variadic(a, *rest, **named): ...
def positional_only(a, b=1, /, c=2, **named): ...
def nothing(): ...


SHAPES = [plain, defaults, required_keyword, variadic, positional_only, nothing]
NAMES = ["a", "b", "c", "key", "rest", "named", "zzz"]


def binds(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Python's own verdict: the functions above do nothing."""
    try:
        fn(*args, **kwargs)
    except TypeError:
        return False
    return True


@given(
    st.sampled_from(SHAPES),
    st.integers(min_value=0, max_value=4),
    st.dictionaries(st.sampled_from(NAMES), st.integers(), max_size=4),
    st.booleans(),
)
def test_the_check_agrees_with_python_calling_the_function(fn, count, kwargs, input_first):
    args = tuple(range(count))
    expected = binds(fn, (None, *args) if input_first else args, kwargs)
    try:
        check_call(fn, "m:f", args, kwargs, input_first)
    except TaskDefinitionError:
        assert not expected
    else:
        assert expected


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "message"),
    [
        (plain, (1, 2, 3), {}, "wrong arguments for m:f(a, b): too many positional arguments"),
        (plain, (1,), {}, "wrong arguments for m:f(a, b): missing a required argument: 'b'"),
        (plain, (1, 2), {"zzz": 3}, "got an unexpected keyword argument 'zzz'"),
        (plain, (1,), {"a": 3}, "multiple values for argument 'a'"),
        (required_keyword, (1,), {}, "missing a required argument: 'key'"),
        (positional_only, (), {"a": 1}, "'a' parameter is positional only"),
    ],
)
def test_a_call_that_does_not_bind_is_named_with_its_mismatch(fn, args, kwargs, message):
    with pytest.raises(TaskDefinitionError) as caught:
        check_call(fn, "m:f", args, kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_annotations_stay_out_of_the_message():
    with pytest.raises(TaskDefinitionError, match=r"wt:collect\(source\): too many"):
        check_call(wt.collect, "wt:collect", ("a", "b"), {})


def test_a_function_without_a_signature_is_left_to_the_worker():
    check_call(getattr, "builtins:getattr", (1, 2, 3, 4, 5), {"x": 1})  # no raise


@pytest.fixture(scope="module")
def builder() -> Queue:
    return Queue("postgresql://unused.invalid/x")  # build() never connects


def test_every_build_checks_the_call_and_its_options_stay_apart(builder):
    builder.build(tasks.add, (1,), {"b": 2, "_queue": "q", "_max_retries": 0})
    with pytest.raises(TaskDefinitionError, match=r"tests.tasks:add\(a, b\): missing"):
        builder.build(tasks.add, (1,), {"_queue": "q"})
    with pytest.raises(TaskDefinitionError, match=r"tests.tasks:decorated\(x\): too many"):
        builder.build(tasks.decorated, (1, 2), {})  # a @task function: its own signature


def test_a_step_gets_what_it_follows_unless_it_ignores_it(builder):
    def compile_(node: Any) -> None:
        compile_workflow(builder, node, max_steps=100)

    compile_(chain(step(wt.square, 2), step(wt.square), step(wt.echo, 1).ignore_result()))
    compile_(group(step(wt.square, 1), step(wt.square, 2)).then(step(wt.total)))
    with pytest.raises(TaskDefinitionError) as caught:
        compile_(chain(step(wt.square, 2), step(wt.square, 3)))
    assert "tests.workflow_tasks:square(i): too many positional arguments" in str(caught.value)
    assert "first argument; .ignore_result() runs it without" in str(caught.value)
    with pytest.raises(TaskDefinitionError, match="missing a required argument: 'i'"):
        compile_(chain(step(wt.square, 2), step(wt.square).ignore_result()))
    with pytest.raises(TaskDefinitionError, match="missing a required argument: 'value'"):
        compile_(step(wt.echo))  # a first step has nothing before it
    with pytest.raises(TaskDefinitionError, match=r"total\(values\): too many"):
        compile_(group(step(wt.square, 1)).then(step(wt.total, [1])))


# --- who may run what ------------------------------------------------------------------------


def gate(flags: dict[str, Any], registered: tuple[str, ...] = ()) -> TaskGate:
    config = load_config(flags, config_file="/dev/null")
    return TaskGate(given_modules(config), () if config.allowed_task_modules else registered)


def test_by_default_only_the_servers_modules_run():
    g = gate({"imports": "myapp.tasks,other", "app": "web.api.main:app"}, ("shared.jobs:send",))
    for name in (
        "myapp.tasks:f",
        "myapp.tasks.sub:f",
        "other:g",
        "web.views:h",
        "shared.jobs:send",
    ):
        assert g.refusal(name) is None, name
    for name in ("os:system", "myapp:f", "myapp.tasksx:f", "shared.jobs:other", "garbage"):
        assert g.refusal(name) == f"{name} is not in the server's modules (allowed_task_modules)"


def test_schedules_give_their_modules():
    config = load_config({}, config_file="/dev/null").replace(
        schedules=({"name": "n", "cron": "* * * * *", "task": "jobs.nightly:run"},)
    )
    assert given_modules(config, ["py.sched:tick"]) == ("jobs.nightly", "py.sched")


def test_a_list_names_the_modules_exactly_and_a_star_allows_anything():
    listed = gate({"allowed_task_modules": "myapp", "imports": "other"}, ("other:f",))
    assert listed.refusal("myapp.x:f") is None
    assert listed.refusal("other:f") is not None  # registered, but not listed
    assert gate({"allowed_task_modules": "*"}).refusal("os:system") is None
    assert gate({}).refusal("os:system") is not None  # nothing given: nothing runs
