"""Compiling workflows into rows and making a step's input: pure, no database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qsup import Queue, TaskDefinitionError, chain, group, step
from qsup.workflow import compile_workflow
from qsup.workflow_values import StepInputMissing, evaluate, step_arguments
from tests import workflow_tasks as wt


@pytest.fixture(scope="module")
def builder() -> Queue:
    return Queue("postgresql://unused.invalid/x")  # build() never connects


def compiled(builder, node, **kw):
    new = compile_workflow(builder, node, max_steps=kw.pop("max_steps", 100), **kw)
    return new, json.loads(new.tasks), json.loads(new.steps), json.loads(new.edges)


def test_a_chain_is_a_line_of_edges_each_step_fed_by_the_one_before(builder):
    new, tasks, steps, edges = compiled(
        builder, chain(step(wt.echo, 1), step(wt.echo, 2).ignore_result(), step(wt.square))
    )
    a, b, c = (t["id"] for t in tasks)
    assert [t["state"] for t in tasks] == ["enqueued", "waiting", "waiting"]
    assert [(e["task_id"], e["depends_on"], e["tolerant"]) for e in edges] == [
        (b, a, False),
        (c, b, False),
    ]
    assert [t["inputs"] for t in tasks] == [None, None, {"ids": [b], "value": b}]
    assert [s["terminal"] for s in steps] == [False, False, True]
    assert [s["path"] for s in steps] == ["0", "1", "2"]
    assert json.loads(new.output) == c and new.queues == ("default",)


def test_a_group_with_allow_failures_feeds_a_summary_through_tolerant_edges(builder):
    node = group(step(wt.square, 1), chain(step(wt.echo, 2), step(wt.square)))
    new, tasks, steps, edges = compiled(builder, node.then(step(wt.echo), allow_failures=True))
    a, b1, b2, then = (t["id"] for t in tasks)
    assert then != a and {
        (e["depends_on"], e["tolerant"]) for e in edges if e["task_id"] == then
    } == {
        (a, True),
        (b2, True),
    }
    assert tasks[3]["inputs"] == {"ids": sorted([a, b2]), "value": {"summary": [a, b2]}}
    assert [s["path"] for s in steps] == ["0.0", "0.1.0", "0.1.1", "1"]
    assert [s["terminal"] for s in steps] == [False, False, False, True]


def test_compensations_and_a_parent_are_recorded(builder):
    parent = "01a2387b-ad52-7510-9213-52b33dea5485"
    saga = chain(step(wt.echo, 1).compensate(step(wt.echo, 0)), step(wt.echo))
    new, tasks, steps, edges = compiled(builder, saga, parent=parent)
    assert steps[0]["compensation"]["name"] == "tests.workflow_tasks:echo"
    assert steps[0]["compensation"]["args"] == "[0]" and steps[1]["compensation"] is None
    assert tasks[0]["state"] == "waiting" and tasks[0]["parent"] == parent
    assert {"task_id": tasks[0]["id"], "depends_on": parent, "tolerant": False} in edges
    assert tasks[0]["inputs"] is None  # the parent's result is not an input


def test_the_step_limit_counts_compensations(builder):
    saga = chain(
        *(step(wt.echo, i).ignore_result().compensate(step(wt.echo, -i)) for i in range(3))
    )
    with pytest.raises(TaskDefinitionError, match="more than 5 steps"):
        compiled(builder, saga, max_steps=5)
    assert len(compiled(builder, saga, max_steps=6)[1]) == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: group(), "empty group"),
        (lambda: step(wt.echo, _depends_on=[]), "_depends_on is not a step option"),
        (lambda: step(wt.echo).compensate("x"), "compensate\\(\\) takes a step"),  # type: ignore[arg-type]
        (
            lambda: step(wt.echo).compensate(step(wt.echo).compensate(step(wt.echo))),
            "a compensation of its own",
        ),
    ],
)
def test_bad_shapes_are_refused_when_built(make, message):
    with pytest.raises(TaskDefinitionError, match=message):
        make()


def test_evaluate_lists_summaries_and_missing_inputs():
    tasks: dict[str, list[Any]] = {
        "a": ["completed", 1, None],
        "b": ["failed", None, "Traceback ...\nValueError: boom\n"],
        "c": ["completed", [2], None],
    }
    assert evaluate({"list": ["a", {"list": ["c", "a"]}]}, tasks) == [1, [[2], 1]]
    assert evaluate({"summary": ["a", "b", {"list": ["c", "b"]}]}, tasks) == {
        "results": [1, None, None],
        "errors": [
            {"index": 1, "task_id": "b", "error": "ValueError: boom"},
            {"index": 2, "task_id": "b", "error": "ValueError: boom"},
        ],
    }
    with pytest.raises(StepInputMissing, match="input task z is missing"):
        evaluate("z", tasks)
    assert step_arguments({"qsup_inputs": "a", "args": [5], "tasks": tasks}) == [1, 5]


def test_nesting_too_deep_is_a_definition_error(builder):
    node: Any = step(wt.echo, 1)
    for _ in range(2000):
        node = chain(node)
    with pytest.raises(TaskDefinitionError, match="too deeply"):
        compiled(builder, node)
