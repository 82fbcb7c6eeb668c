"""Batch fan-out/fan-in: one task per item in parallel, then a summary of how many succeeded and
failed (``allow_failures``: the summary runs even when some items failed).

    qsup serve --import examples.workflows.batch
    python -m examples.workflows.batch                 # {'succeeded': 8, 'failed': 2, ...}
"""

from __future__ import annotations

from qsup import NonRetryableError, Queue, WorkflowRef, group, step


def process(item: int) -> int:
    if item % 5 == 4:  # some items are bad: they fail for good, without retries
        raise NonRetryableError(f"item {item} is malformed")
    return item * 10


def summarize(outcome: dict) -> dict:
    """``outcome`` is {"results": [...], "errors": [{"index", "task_id", "error"}, ...]}."""
    ok = [r for r in outcome["results"] if r is not None]
    return {
        "succeeded": len(ok),
        "failed": len(outcome["errors"]),
        "total": sum(ok),
        "failed_items": [e["index"] for e in outcome["errors"]],
    }


def batch(q: Queue, items: list[int]) -> WorkflowRef:
    fan_out = group(*(step(process, i) for i in items))
    return q.add_workflow(fan_out.then(step(summarize), allow_failures=True))


if __name__ == "__main__":
    from examples.workflows import batch as recipe  # importable: not __main__'s functions

    print(recipe.batch(Queue(), list(range(10))).result(timeout=60))
