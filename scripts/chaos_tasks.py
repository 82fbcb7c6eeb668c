"""Task functions of the chaos harness (``scripts/chaos.py``), imported by ``qsup serve``.

Every task records each run it starts and finishes by appending a line to ``<runs>/<task id>``:
``start <pid> <attempt> <unix time>`` and ``done <pid> <attempt> <unix time>``. The harness
reads these files to prove that every completed task really ran, and to count reruns. Each
task returns its own id so a result can be matched to its row.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from qsup import current_task

_LEAK: list[bytearray] = []


def _mark(runs: str, what: str) -> None:
    line = f"{what} {os.getpid()} {current_task.attempt} {time.time():.6f}\n"
    with open(Path(runs) / str(current_task.id), "a") as f:
        f.write(line)
        f.flush()


def fast(runs: str) -> str:
    _mark(runs, "start")
    _mark(runs, "done")
    return str(current_task.id)


def slow(runs: str, seconds: float) -> str:
    _mark(runs, "start")
    time.sleep(seconds)
    _mark(runs, "done")
    return str(current_task.id)


def flaky(runs: str, failures: int) -> str:
    """Fail the first ``failures`` attempts, then succeed."""
    _mark(runs, "start")
    if current_task.attempt <= failures:
        _mark(runs, "fail")
        raise RuntimeError(f"flaky: failing attempt {current_task.attempt} of {failures}")
    _mark(runs, "done")
    return str(current_task.id)


async def async_sleep(runs: str, seconds: float) -> str:
    _mark(runs, "start")
    await asyncio.sleep(seconds)
    _mark(runs, "done")
    return str(current_task.id)


def leak(runs: str, megabytes: int) -> str:
    """Keep ``megabytes`` alive in the worker, so memory recycling kicks in."""
    _mark(runs, "start")
    block = bytearray(megabytes * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it counts in RSS
    _LEAK.append(block)
    _mark(runs, "done")
    return str(current_task.id)


def overtime(runs: str, seconds: float, stubborn: bool) -> str:
    """Run past the task's timeout; a stubborn one swallows the timeout and keeps going,
    so the supervisor has to kill its worker after the grace period."""
    _mark(runs, "start")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(max(0.0, end - time.monotonic()))
        except BaseException:  # noqa: BLE001 - on purpose: ignore the timeout
            if not stubborn:
                raise
    _mark(runs, "done")
    return str(current_task.id)


def always_fail(runs: str) -> str:
    _mark(runs, "start")
    _mark(runs, "fail")
    raise ValueError("always_fail: this task fails on every attempt")
