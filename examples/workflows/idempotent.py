"""Idempotent retries with unique keys.

Two keys make a retried or resubmitted job safe: the workflow's ``unique_key`` (submitting the
same invoice twice while the first run is unfinished returns that run) and the side effect's
own key (a step retried after it charged but before its result was stored must not charge
again: the "payment provider" below remembers keys, as real ones do with idempotency keys).

    qsup serve --import examples.workflows.idempotent
    python -m examples.workflows.idempotent
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from qsup import Queue, WorkflowRef, chain, current_task, step

PROVIDER = Path(os.environ.get("PROVIDER_DIR", Path(tempfile.gettempdir()) / "qsup-provider"))


def provider_charge(idempotency_key: str, amount: int) -> dict:
    """Stand-in for a payment API that honours idempotency keys: a repeat returns the first
    charge instead of making another."""
    PROVIDER.mkdir(parents=True, exist_ok=True)
    record = PROVIDER / f"{idempotency_key}.json"
    if record.exists():
        return {**json.loads(record.read_text()), "replayed": True}
    charge = {"key": idempotency_key, "amount": amount}
    record.write_text(json.dumps(charge))
    return {**charge, "replayed": False}


def charge_invoice(invoice: str, amount: int, fail_attempts: int = 0) -> dict:
    """Charges, then (for the demonstration) fails its first ``fail_attempts`` attempts after
    charging: the retries replay the same charge."""
    charge = provider_charge(f"invoice:{invoice}", amount)
    if current_task.attempt <= fail_attempts:
        raise ConnectionError("lost the provider's answer")
    return {**charge, "attempt": current_task.attempt}


def receipt(charge: dict) -> str:
    return f"charged {charge['amount']} once (attempt {charge['attempt']})"


def bill(q: Queue, invoice: str, amount: int, fail_attempts: int = 0) -> WorkflowRef:
    return q.add_workflow(
        chain(
            step(charge_invoice, invoice, amount, fail_attempts, _max_retries=5),
            step(receipt),
        ),
        unique_key=f"bill:{invoice}",
    )


if __name__ == "__main__":
    from examples.workflows import idempotent as recipe  # importable: not __main__'s functions

    queue = Queue()
    first = recipe.bill(queue, "inv-1", 42, fail_attempts=2)
    again = recipe.bill(queue, "inv-1", 42, fail_attempts=2)  # a double submit: the same workflow
    assert again.workflow_id == first.workflow_id
    print(first.result(timeout=60))
