"""A conditional workflow: a step looks at an intermediate result and adds the path to take
with ``current_task.add_workflow`` (its steps start once the choosing step completes).

    qsup serve --import examples.workflows.conditional
    python -m examples.workflows.conditional           # the branch taken and its outcome
"""

from __future__ import annotations

from qsup import Queue, WorkflowRef, chain, current_task, step


def score(order_total: float) -> float:
    """Stand-in for a fraud model."""
    return 0.9 if order_total > 1000 else 0.1


def route(risk: float, order_id: str) -> dict:
    """Chooses the branch; returns its workflow id so a caller can follow it."""
    if risk > 0.5:
        branch = chain(step(hold, order_id), step(notify, "fraud-team"))
    else:
        branch = chain(step(approve, order_id), step(notify, "customer"))
    added = current_task.add_workflow(branch)
    return {"risk": risk, "branch_workflow": str(added.workflow_id)}


def hold(order_id: str) -> str:
    return f"{order_id} held for review"


def approve(order_id: str) -> str:
    return f"{order_id} approved"


def notify(message: str, who: str) -> str:
    return f"told {who}: {message}"


def check(q: Queue, order_id: str, total: float) -> WorkflowRef:
    return q.add_workflow(chain(step(score, total), step(route, order_id=order_id)))


def branch_of(q: Queue, decision: dict) -> WorkflowRef:
    """A handle on the branch a ``route`` step added."""
    return WorkflowRef(q, decision["branch_workflow"], [], None)


if __name__ == "__main__":
    from examples.workflows import conditional as recipe  # importable: not __main__'s functions

    queue = Queue()
    decision = recipe.check(queue, "order-7", 2500.0).result(timeout=60)
    print(decision["risk"], recipe.branch_of(queue, decision).result(timeout=60))
