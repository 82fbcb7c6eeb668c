"""Workflows as values: ``step``, ``chain``, ``group`` (the canvas) and how one becomes rows.

A workflow is compiled, before anything is written, into ordinary task rows plus the edges
between them and, per step, how its input is made of earlier results (an *input expression*:
a task id stands for that task's result, ``{"list": [...]}`` for a group's results in order,
``{"summary": [...]}`` for a group run with ``allow_failures``). :mod:`qsup.workflow_values`
evaluates those expressions; :mod:`qsup.workflow_store` writes and unwinds workflows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from uuid_utils import uuid7

from qsup import repo
from qsup.errors import TaskDefinitionError

_REFUSED_OPTIONS = ("_parent", "_depends_on")  # a step's dependencies are the workflow's


@dataclass(frozen=True, eq=False)
class Step:
    """A task to be: ``step(fn, *args, _queue=..., **kwargs)``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    takes_input: bool = True
    compensation: Step | None = None

    def ignore_result(self) -> Step:
        """Run without the previous result as first argument."""
        return replace(self, takes_input=False)

    def compensate(self, undo: Step) -> Step:
        """``undo`` runs if the workflow fails or is cancelled after this step completed."""
        if not isinstance(undo, Step):
            raise TaskDefinitionError(f"compensate() takes a step(...), got {undo!r}")
        if undo.compensation is not None:
            raise TaskDefinitionError("a compensation cannot have a compensation of its own")
        return replace(self, compensation=undo)


@dataclass(frozen=True, eq=False)
class Chain:
    """Steps in order, each result the next one's first positional argument."""

    items: tuple[Node, ...]

    def then(self, item: Node) -> Chain:
        return Chain((*self.items, item))


@dataclass(frozen=True, eq=False)
class Group:
    """Steps in parallel; their results, in the group's order, feed what follows."""

    items: tuple[Node, ...]
    allow_failures: bool = False

    def then(self, item: Node, *, allow_failures: bool = False) -> Chain:
        """``item`` gets the list of results, or with ``allow_failures`` a summary
        ``{"results": [...], "errors": [{"index", "task_id", "error"}]}`` once all ended."""
        return Chain((replace(self, allow_failures=allow_failures), item))


Node = Step | Chain | Group


def step(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Step:
    for option in _REFUSED_OPTIONS:
        if option in kwargs:
            raise TaskDefinitionError(f"{option} is not a step option: steps wait on each other")
    return Step(fn, args, kwargs)


def chain(*items: Node) -> Chain:
    return Chain(_checked("chain", items))


def group(*items: Node) -> Group:
    return Group(_checked("group", items))


def _checked(kind: str, items: tuple[Any, ...]) -> tuple[Node, ...]:
    if len(items) == 1 and isinstance(items[0], list | tuple):  # group([...]) reads well too
        items = tuple(items[0])
    if not items:
        raise TaskDefinitionError(f"an empty {kind}: give it at least one step")
    for item in items:
        if not isinstance(item, Step | Chain | Group):
            raise TaskDefinitionError(f"{kind}() takes step(...), chain(...) or group(...), got "
                                      f"{item!r}")  # fmt: skip
    return items


# --- compiling ---------------------------------------------------------------------------


class Builder(Protocol):
    """What compiling needs of a Queue: one call checked and encoded into a row."""

    def build(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        input_first: bool = False,
    ) -> repo.NewTask: ...


class NewWorkflow(NamedTuple):
    """A workflow ready to insert in one statement (JSON documents; picklable, so a task can
    send one to its supervisor)."""

    id: str
    label: str
    output: str  # the input expression of the workflow's result
    parent: str | None
    unique_key: str | None
    task_ids: tuple[str, ...]  # the steps, in the order written
    tasks: str
    steps: str
    edges: str
    queues: tuple[str, ...]  # of the steps enqueued at once (to wake servers)


class _Up(NamedTuple):
    """What a node follows: the tasks it waits on, the value they make, and whether it waits
    tolerantly (after a group with ``allow_failures``)."""

    ids: tuple[str, ...]
    value: Any  # an input expression, or None: no value to pass
    tolerant: bool = False


class _Compiler:
    def __init__(self, builder: Builder, max_steps: int) -> None:
        self.builder = builder
        self.max_steps = max_steps
        self.tasks: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self.seen: set[int] = set()
        self.count = 0

    def node(self, node: Node, up: _Up | None, path: str) -> _Up:
        if id(node) in self.seen:
            raise TaskDefinitionError(
                f"a cycle: the same {type(node).__name__.lower()} appears twice in the workflow"
                f" (at {path or 'the top'}); build a new one for each place"
            )
        self.seen.add(id(node))
        if isinstance(node, Step):
            return self.step(node, up, path)
        if isinstance(node, Chain):
            for index, item in enumerate(node.items):
                up = self.node(item, up, _join(path, index))
            assert up is not None
            return up
        members = [self.node(item, up, _join(path, i)) for i, item in enumerate(node.items)]
        kind = "summary" if node.allow_failures else "list"
        ids = tuple(i for member in members for i in member.ids)
        return _Up(ids, {kind: [member.value for member in members]}, node.allow_failures)

    def row(self, item: Step, what: str, input_first: bool = False) -> repo.NewTask:
        self.count += 1
        if self.count > self.max_steps:
            raise TaskDefinitionError(
                f"the workflow has more than {self.max_steps} steps"
                " (max_workflow_steps, QUEUE_MAX_WORKFLOW_STEPS)"
            )
        if not isinstance(item, Step):
            raise TaskDefinitionError(f"{what} must be a step(...), got {item!r}")
        return self.builder.build(item.fn, item.args, item.kwargs, input_first=input_first)

    def step(self, item: Step, up: _Up | None, path: str) -> _Up:
        value = up.value if item.takes_input and up is not None else None
        new = self.row(item, "a workflow member", input_first=value is not None)
        ids = up.ids if up else ()
        inputs = None
        if value is not None:
            inputs = {"ids": sorted(set(input_ids(value))), "value": value}
        self.tasks.append(_task_doc(new, "waiting" if ids else "enqueued", inputs))
        tolerant = up.tolerant if up else False
        self.edges.extend({"task_id": new.id, "depends_on": i, "tolerant": tolerant} for i in ids)
        compensation = None
        if item.compensation is not None:
            undo = self.row(item.compensation, "a compensation")
            compensation = _task_doc(undo, "enqueued", None)
        self.steps.append({"task_id": new.id, "position": len(self.steps), "path": path or "0",
                           "terminal": False, "compensation": compensation})  # fmt: skip
        return _Up((new.id,), new.id)


def compile_workflow(
    builder: Builder,
    root: Node,
    *,
    max_steps: int,
    parent: str | None = None,
    unique_key: str | None = None,
) -> NewWorkflow:
    """Check ``root`` all through and turn it into rows; every refusal is a
    TaskDefinitionError, raised before anything is written."""
    if not isinstance(root, Step | Chain | Group):
        raise TaskDefinitionError(f"add_workflow() takes step/chain/group, got {root!r}")
    compiler = _Compiler(builder, max_steps)
    try:
        out = compiler.node(root, _Up((parent,), None) if parent else None, "")
    except RecursionError:
        raise TaskDefinitionError("the workflow nests chains and groups too deeply") from None
    terminal = set(out.ids)
    for doc in compiler.steps:
        doc["terminal"] = doc["task_id"] in terminal
    entries = {e["task_id"] for e in compiler.edges if e["depends_on"] == parent}
    for doc in compiler.tasks:  # the steps that wait for the running task are its children
        if doc["id"] in entries:
            doc["parent"] = parent
    first = compiler.tasks[0]["name"]
    label = first if len(compiler.tasks) == 1 else f"{first} (+{len(compiler.tasks) - 1})"
    return NewWorkflow(
        str(uuid7()),
        label,
        json.dumps(out.value),
        parent,
        unique_key,
        tuple(doc["id"] for doc in compiler.tasks),
        json.dumps(compiler.tasks),
        json.dumps(compiler.steps),
        json.dumps(compiler.edges),
        tuple(sorted({d["queue"] for d in compiler.tasks if d["state"] == "enqueued"})),
    )


def _join(path: str, index: int) -> str:
    return f"{path}.{index}" if path else str(index)


def input_ids(value: Any) -> Iterator[str]:
    """The task ids an input expression reads."""
    if isinstance(value, str):
        yield value
    else:
        for items in value.values():
            for item in items:
                yield from input_ids(item)


def _task_doc(new: repo.NewTask, state: str, inputs: Any) -> dict[str, Any]:
    """A row as the ``insert_workflow`` statement reads it (args stay JSON text)."""
    return {
        "id": new.id,
        "name": new.name,
        "state": state,
        "parent": None,
        "queue": new.queue,
        "priority": new.priority,
        "args": new.args,
        "kwargs": new.kwargs,
        "delay": new.delay,
        "eta": new.eta.isoformat() if new.eta else None,
        "max_retries": new.max_retries,
        "timeout": new.timeout,
        "unique_key": new.unique_key,
        "inputs": inputs,
    }
