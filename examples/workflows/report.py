"""A report chain: collect -> format -> deliver, each step's result handed to the next.

qsup serve --import examples.workflows.report      # one shell
python -m examples.workflows.report                # another: prints the delivery receipt
"""

from __future__ import annotations

from qsup import Queue, WorkflowRef, chain, step


def collect(source: str) -> list[dict]:
    """Stand-in for a query: the rows of a sales report."""
    return [{"region": r, "amount": a} for r, a in (("north", 120), ("south", 80))]


def render(rows: list[dict], fmt: str = "txt") -> str:
    lines = [f"{row['region']}: {row['amount']}" for row in rows]
    return f"[{fmt}] total {sum(row['amount'] for row in rows)}; " + "; ".join(lines)


def deliver(document: str, to: list[str]) -> dict:
    """Stand-in for an email: returns the receipt."""
    return {"to": to, "bytes": len(document), "document": document}


def report(q: Queue, source: str, to: list[str]) -> WorkflowRef:
    return q.add_workflow(
        chain(step(collect, source), step(render, fmt="pdf"), step(deliver, to=to))
    )


if __name__ == "__main__":
    from examples.workflows import report as recipe  # importable: not __main__'s functions

    print(recipe.report(Queue(), "sales", ["boss@example.com"]).result(timeout=60))
