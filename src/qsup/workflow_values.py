"""A step's input, made from the rows of the tasks it waited on (pure: the claim brings the
rows, the worker calls :func:`step_arguments`; a workflow's result uses :func:`evaluate`).

An input expression is a task id (that task's result), ``{"list": [e, ...]}`` (each member's
value, in order) or ``{"summary": [e, ...]}`` (``{"results": [...], "errors": [...]}``, a
failed member's result being None). ``tasks`` maps ids to ``[state, result, error]``.
"""

from __future__ import annotations

from typing import Any

from qsup.errors import TaskDefinitionError

INPUTS_KEY = "qsup_inputs"  # marks a claimed step's arguments that carry its input


class StepInputMissing(TaskDefinitionError):
    """A task the input needs did not complete (its row pruned, say): the step fails at once."""


def evaluate(expr: Any, tasks: dict[str, list[Any]]) -> Any:
    if isinstance(expr, str):
        found = tasks.get(expr)
        if found is None or found[0] != "completed":
            state = found[0] if found else "missing"
            raise StepInputMissing(f"input task {expr} is {state}, not completed")
        return found[1]
    if "list" in expr:
        return [evaluate(item, tasks) for item in expr["list"]]
    results: list[Any] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(expr["summary"]):
        bad = _first_unfinished(item, tasks)
        if bad is None:
            results.append(evaluate(item, tasks))
        else:
            results.append(None)
            found = tasks.get(bad)
            lines = (found[2] or "").strip().splitlines() if found else []
            error = lines[-1] if lines else (found[0] if found else "missing")  # not a traceback
            errors.append({"index": index, "task_id": bad, "error": error})
    return {"results": results, "errors": errors}


def _first_unfinished(expr: Any, tasks: dict[str, list[Any]]) -> str | None:
    """The first task of ``expr`` that did not complete, depth first."""
    if isinstance(expr, str):
        found = tasks.get(expr)
        return None if found is not None and found[0] == "completed" else expr
    for items in expr.values():
        for item in items:
            bad = _first_unfinished(item, tasks)
            if bad is not None:
                return bad
    return None


def step_arguments(claimed: dict[str, Any]) -> list[Any]:
    """A claimed step's positional arguments: its input first, then its own."""
    args = claimed.get("args")
    if not isinstance(args, list):
        args = []
    return [evaluate(claimed[INPUTS_KEY], claimed.get("tasks") or {}), *args]
