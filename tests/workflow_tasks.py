"""Task functions of the workflow tests (imported by real ``qsup serve`` processes)."""

from __future__ import annotations

import time
from pathlib import Path

from qsup import NonRetryableError, chain, current_task, step


def collect(source: str) -> dict:
    return {"source": source, "rows": [1, 2, 3]}


def render(data: dict, fmt: str) -> str:
    return f"{data['source']}:{sum(data['rows'])}.{fmt}"


def deliver(document: str, to: list[str]) -> dict:
    return {"document": document, "to": to}


def square(i: int) -> int:
    if i < 0:
        raise NonRetryableError(f"negative input {i}")
    return i * i


def echo(value):
    return value


def total(values: list[int]) -> int:
    return sum(values)


def journal(directory: str, name: str, seconds: float = 0.0) -> str:
    """Append ``name`` to ``directory/journal`` (the tests read the order and the count)."""
    time.sleep(seconds)
    with open(Path(directory) / "journal", "a") as f:
        f.write(f"{name}\n")
    return name


def journal_then_fail(directory: str, name: str) -> None:
    journal(directory, name)
    raise NonRetryableError(f"{name} failed")


def wait_for_file(path: str, timeout: float = 30.0) -> str:
    """Run until ``path`` exists (a step the test can hold running)."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path


def branch(value: int) -> str:
    """Choose the path on an intermediate result: even numbers are doubled, odd ones negated."""
    if value % 2 == 0:
        current_task.add_workflow(chain(step(echo, value), step(square)))
        return "even"
    current_task.add_workflow(step(echo, -value))
    return "odd"


def branch_with_key(key: str) -> str:
    """Adds a workflow whose step holds ``key`` (refused when the key is taken)."""
    current_task.add_workflow(step(echo, key, _unique_key=key))
    return "added"


def not_json() -> set:
    return {1, 2}
