"""What a running task is doing right now, for ``qsup task stack`` and ``task show``.

The answer is built on the reporter's thread, which reads the worker's pipe every
``reporter.SAFETY_NET`` while a job runs: the task's own (main) thread is neither stopped nor
interrupted (a signal would break a C call that does not retry on EINTR), and a thread sleeping
in a C call (``time.sleep``, a socket read) has released the GIL, so its frames can be read at
once. An async task's frames are those of its coroutine chain (``cr_await``), not the event
loop's: a suspended coroutine has no caller frame, so ``Task.get_stack`` would show only the
outermost one. Code that holds the GIL in one long C call (no ``time.sleep``, no I/O) delays
the answer until it lets go, as it delays every other thread.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

from qsup import protocol
from qsup.worker.meter import Meter

# Frames every task runs under (qsup's, asyncio's): left out of the stack shown first
RunnerDirs = tuple[str, ...]
# The worker's frames down to the runner's call of the task are left out too (the fork, the
# supervisor's frames the worker inherited, the worker's loop)
_RUNNER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
_SELECTORS = selectors.__file__  # where an idle event loop waits


# The job the worker's main thread runs: (task id, wall time and CPU seconds at its start); a
# plain tuple, set once per job (a class or a NamedTuple costs more on the drain)
Running = tuple[str, float, float]


def _chain(frame: FrameType | None) -> list[FrameType]:
    """A thread's frames, outermost first."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def _awaited(coro: Any) -> Iterator[FrameType]:
    """A coroutine's frame, then those of what it awaits, down to the innermost."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def _users(frames: list[FrameType], runner_dirs: RunnerDirs) -> list[FrameType]:
    """The frames from the first one outside qsup and asyncio below the runner's on (empty
    when all are theirs: an async task's main thread waits in the event loop)."""
    runner = [i for i, f in enumerate(frames) if f.f_code.co_filename == _RUNNER_FILE]
    start = runner[-1] + 1 if runner else 0
    while start < len(frames) and frames[start].f_code.co_filename.startswith(runner_dirs):
        start += 1
    return frames[start:]


def _format(frames: list[FrameType]) -> str:
    """Traceback-style lines: file, line, function, source line."""
    summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
    return "".join(summary.format())


def _task_chains(loop: asyncio.AbstractEventLoop, runner_dirs: RunnerDirs) -> list[str]:
    """One block per pending asyncio task of the loop that runs code of the user's (the
    runner's ``wait_for`` awaits the task's own)."""
    blocks = []
    for task in asyncio.all_tasks(loop):  # safe from another thread: it retries a changed set
        frames = list(_awaited(task.get_coro()))
        users = _users(frames, runner_dirs)
        if users:  # from the user's outermost frame down to asyncio's innermost
            body = _format(frames[len(frames) - len(users) :])
            blocks.append(f"Coroutine chain of {task.get_name()} (innermost last):\n{body}")
    return blocks


def stack_text(loop: asyncio.AbstractEventLoop, runner_dirs: RunnerDirs) -> str:
    """The main thread's stack and, for async tasks, each task's coroutine chain."""
    main = threading.main_thread().ident
    frames = _chain(sys._current_frames().get(main or 0))
    blocks = _task_chains(loop, runner_dirs) if loop.is_running() else []
    users = _users(frames, (*runner_dirs, _SELECTORS))
    if users or not blocks:  # in the event loop's own frames: the chains say it all
        blocks.insert(0, f"Main thread (innermost last):\n{_format(users or frames)}")
    return "\n".join(blocks)


def answer(
    task_id: str,
    running: Running | None,
    loop: asyncio.AbstractEventLoop,
    meter: Meter,
    runner_dirs: RunnerDirs,
) -> protocol.Inspected:
    """What the task is doing and has cost so far; a stack of None when it no longer runs
    here (it ended while the question travelled)."""
    if running is None or running[0] != task_id:
        return protocol.Inspected(task_id, None)
    _, started, cpu = running
    stack = stack_text(loop, runner_dirs)
    return protocol.Inspected(
        task_id, stack, time.process_time() - cpu, meter.resident(), time.time() - started
    )
