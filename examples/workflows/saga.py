"""A payment saga: reserve stock, charge the card, ship. When a later step fails for good, the
compensations of the steps that completed run, newest first, each once: refund, then release.

    qsup serve --import examples.workflows.saga
    python -m examples.workflows.saga                  # ship fails: see the ledger undone
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from qsup import NonRetryableError, Queue, TaskFailed, WorkflowRef, chain, step

LEDGER = Path(os.environ.get("SAGA_LEDGER", Path(tempfile.gettempdir()) / "qsup-saga.jsonl"))


def _write(entry: dict) -> dict:
    with LEDGER.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def reserve(order: dict) -> dict:
    return _write({"op": "reserve", "order": order["id"], "items": order["items"]})


def release(order: dict) -> dict:
    return _write({"op": "release", "order": order["id"]})


def charge(order: dict) -> dict:
    return _write({"op": "charge", "order": order["id"], "amount": order["amount"]})


def refund(order: dict) -> dict:
    return _write({"op": "refund", "order": order["id"], "amount": order["amount"]})


def ship(order: dict) -> dict:
    if order.get("address") is None:
        raise NonRetryableError(f"order {order['id']} has no address")
    return _write({"op": "ship", "order": order["id"]})


def checkout(q: Queue, order: dict) -> WorkflowRef:
    # every step takes the order, not the previous result: .ignore_result()
    return q.add_workflow(
        chain(
            step(reserve, order).ignore_result().compensate(step(release, order)),
            step(charge, order).ignore_result().compensate(step(refund, order)),
            step(ship, order).ignore_result(),
        ),
        unique_key=f"checkout:{order['id']}",  # a double submit returns the same saga
    )


if __name__ == "__main__":
    from examples.workflows import saga as recipe  # importable: not __main__'s functions

    saga = recipe.checkout(Queue(), {"id": "o-1", "items": 2, "amount": 30, "address": None})
    try:
        saga.result(timeout=60)
    except TaskFailed as failed:
        print("failed:", failed.error)
    print("ledger:", LEDGER)
