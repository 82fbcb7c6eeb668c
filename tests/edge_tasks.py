"""Tasks for the accounting and containment tests (tests/e2e/test_edge.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def mark_then_sleep(directory: str, key: str, seconds: float) -> str:
    """Append our pid to ``directory/key`` as we start, then sleep: tests see each run begin."""
    with open(Path(directory) / key, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return key


def kill_own_supervisor(directory: str, key: str) -> None:
    """Note the run in ``directory/key``, then SIGKILL the supervisor at once (before it
    could write that the task started): a task that takes its server down."""
    with open(Path(directory) / key, "a") as f:
        f.write(f"{os.getpid()}\n")
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)  # the worker dies with its supervisor


def kill_own_worker(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(5)  # a signal that does not kill (never with SIGKILL/SIGSEGV) still ends it


def burn(seconds: float) -> float:
    """Use ``seconds`` of CPU."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return seconds


def allocate(megabytes: int) -> int:
    """Touch ``megabytes`` for a moment, then free them (a peak, no growth)."""
    block = bytearray(megabytes * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def grow_slowly(megabytes: int, seconds: float) -> int:
    """Allocate ``megabytes`` over ``seconds``, holding all of it."""
    held = []
    step = max(1, megabytes // 20)
    for _ in range(0, megabytes, step):
        held.append(bytearray(b"x" * (step * 2**20)))
        time.sleep(seconds / 20)
    return len(held)
