"""A circuit breaker around a flaky external call. After ``THRESHOLD`` failures in a row the
breaker opens: calls are not made for ``COOLDOWN`` seconds, the step asks to be retried after
the cooldown instead (``Retry(delay=...)``), and one trial call closes it again on success.
The breaker's state is a small JSON file, shared by every worker process of the host.

    qsup serve --import examples.workflows.circuit_breaker
    python -m examples.workflows.circuit_breaker
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qsup import Queue, Retry, WorkflowRef, chain, step

STATE = Path(os.environ.get("BREAKER_STATE", Path(tempfile.gettempdir()) / "qsup-breaker.json"))
THRESHOLD = 3
COOLDOWN = 2.0
CLOSED = '{"failures": 0, "opened_at": null}'  # the state before any call


@contextmanager
def _breaker() -> Iterator[dict[str, Any]]:
    """The breaker's state, locked against the other workers while it is changed."""
    with open(STATE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        state = json.loads(f.read() or CLOSED)
        yield state
        f.seek(0)
        f.truncate()
        f.write(json.dumps(state))


def read_state(path: Path = STATE) -> dict[str, Any]:
    """The breaker's state as the workers last left it, read under their lock (a write
    truncates the file first)."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        f.seek(0)
        return json.loads(f.read() or CLOSED)  # type: ignore[no-any-return]


def guarded(call: Callable[[], Any]) -> Any:
    with _breaker() as state:
        opened = state["opened_at"]
        if opened is not None and time.time() - opened < COOLDOWN:
            raise Retry(delay=COOLDOWN - (time.time() - opened), reason="circuit open")
    try:
        value = call()
    except Exception:
        with _breaker() as state:
            state["failures"] += 1
            if state["failures"] >= THRESHOLD:
                state["opened_at"] = time.time()
        raise
    with _breaker() as state:
        state["failures"], state["opened_at"] = 0, None
    return value


def flaky_rates(fail_file: str) -> dict[str, float]:
    """Stand-in for an external API: fails while ``fail_file`` exists."""

    def call() -> dict[str, float]:
        if os.path.exists(fail_file):
            raise ConnectionError("rates service unavailable")
        return {"EUR": 1.0, "USD": 1.08}

    return guarded(call)  # type: ignore[no-any-return]


def convert(rates: dict[str, float], amount: float) -> float:
    return round(amount * rates["USD"], 2)


def priced(q: Queue, amount: float, fail_file: str, retries: int = 10) -> WorkflowRef:
    return q.add_workflow(
        chain(step(flaky_rates, fail_file, _max_retries=retries), step(convert, amount=amount))
    )


def demo(q: Queue, deadline: float = 60.0) -> None:
    """An outage of the rates service: the breaker opens after THRESHOLD failed attempts, the
    service comes back, and the step's next attempt after the cooldown closes it."""
    with _breaker() as state:
        state.update(json.loads(CLOSED))  # a fresh breaker, whatever an earlier run left
    outage = Path(tempfile.mkdtemp()) / "outage"  # the service is down while this file exists
    outage.touch()
    wf = priced(q, 100.0, str(outage))
    give_up = time.monotonic() + deadline
    while read_state()["opened_at"] is None:
        if time.monotonic() > give_up:
            raise TimeoutError("the breaker did not open: is `qsup serve` importing this module?")
        time.sleep(0.1)
    print(f"breaker open after {read_state()['failures']} failures; the service is back")
    outage.unlink()
    print(wf.result(timeout=deadline))
    print(f"breaker closed: {read_state()}")


if __name__ == "__main__":
    from examples.workflows import circuit_breaker as recipe  # importable: not __main__'s functions

    recipe.demo(Queue())
