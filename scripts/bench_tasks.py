"""Task functions of the benchmark (``scripts/bench.py``); imported by ``qsup serve --import
bench_tasks`` with ``scripts/`` on PYTHONPATH."""

from __future__ import annotations

import asyncio
import time


def noop() -> None:
    return None


def stamp() -> float:
    """The wall-clock time at which the task function started."""
    return time.time()


def sleep_sync(seconds: float) -> None:
    time.sleep(seconds)


async def sleep_async(seconds: float) -> None:
    await asyncio.sleep(seconds)


def burn(seconds: float) -> float:
    """Spin on the CPU for ``seconds`` of this process's CPU time."""
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return seconds


def stamp_sleep(seconds: float) -> float:
    """Record the wall-clock start, then take ``seconds`` (the steady-load scenario's task)."""
    started = time.time()
    time.sleep(seconds)
    return started


def stamp_hop(previous: float) -> float:
    """A chain step: the wall-clock time it started (the previous step's is its input)."""
    return time.time()


def count_inputs(values: list) -> int:
    """A group's ``.then``: how many results it was handed."""
    return len(values)
