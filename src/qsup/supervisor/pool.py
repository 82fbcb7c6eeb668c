"""Worker processes: spawn (fork with multiprocess), signal, reap and explain exits."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import multiprocess

from qsup import protocol
from qsup.settings import Config
from qsup.worker.main import worker_main

_FORK = multiprocess.get_context("fork")


@dataclass(eq=False)
class Worker:
    """The supervisor's view of one worker process (the tasks it holds are the ledger's)."""

    slot: int
    pid: int
    process: Any
    conn: Any
    ready: bool = False
    deadline: float | None = None  # monotonic time past which the worker is killed
    idle_since: float = 0.0
    tasks_done: int = 0
    rss: int = 0
    retiring: str | None = None  # why it was told to stop
    kill_reason: str | None = None  # why we killed it: "timeout", "memory", "shutdown", ...
    exit_code: int | None = None
    crash: str | None = None  # how it died, when that counts against its task (crash_cause)
    jitter: float = field(default_factory=random.random)  # when it recycles, near its limits
    waiting: Callable[[], bool] = field(init=False, repr=False)  # a message to read?

    def __post_init__(self) -> None:
        self.waiting = protocol.waiting(self.conn.fileno())

    @property
    def accepting(self) -> bool:
        """Booted, not told to stop, not dead: may be given jobs."""
        return self.ready and self.retiring is None and self.exit_code is None


def spawn(slot: int, config: Config) -> Worker:
    """Fork a worker; the child starts warm with everything the supervisor imported."""
    parent_end, child_end = _FORK.Pipe(duplex=True)
    process = _FORK.Process(
        target=worker_main, args=(child_end, slot, os.getpid(), config), name=f"qsup-worker-{slot}"
    )
    process.start()
    # Only the arbiter reaps workers (waitpid(-1), see reap). multiprocess polls, and so reaps,
    # every child it still tracks whenever it starts another one: a worker that died just
    # before a spawn vanished unreported and stayed in the crew for good.
    multiprocess.process._children.discard(process)
    child_end.close()
    return Worker(slot=slot, pid=process.pid, process=process, conn=parent_end)


def kill(worker: Worker, reason: str) -> None:
    worker.kill_reason = worker.kill_reason or reason
    try:
        os.kill(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap() -> list[tuple[int, int]]:
    """Collect every exited child, workers or not (as PID 1 we inherit zombies):
    ``(pid, exit code)`` with negative codes for signals."""
    exited = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        exited.append((pid, os.waitstatus_to_exitcode(status)))
    return exited


# Why qsup killed a worker (its ``kill_reason``), as the log and the task's error say it.
KILLED_FOR = {
    "timeout": "its task overran its timeout",
    "cancel": "its task was cancelled",
    "shutdown": "the shutdown timeout passed",
    "fenced": "its server lost its liveness lock",
    "rescued": "its server was declared dead and its tasks taken back by another",
    "memory": "it used more memory than worker_memory_limit_mb",
}


def exit_label(code: int) -> str:
    """``exit code N`` or ``signal NAME``: the label of the crashed-workers counter."""
    if code >= 0:
        return f"exit code {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
    return f"signal {name}"


def describe_exit(code: int, kill_reason: str | None = None, oom_killed: bool | None = None) -> str:
    """How a worker ended: why qsup killed it, or, for a SIGKILL from elsewhere, whether its
    cgroup recorded an OOM kill (``oom_killed`` None: nothing to tell)."""
    label = exit_label(code)
    if kill_reason is not None:
        return f"{label}, killed by qsup: {KILLED_FOR.get(kill_reason, kill_reason)}"
    if code != -signal.SIGKILL:
        return label
    if oom_killed:
        return f"{label}, out of memory: the kernel's OOM killer (cgroup oom_kill count rose)"
    if oom_killed is None:
        return f"{label}, not sent by qsup (out of memory? the kernel log would say)"
    return f"{label}, not sent by qsup and no OOM kill in its cgroup"


def crash_cause(code: int, kill_reason: str | None, oom_killed: bool | None) -> str | None:
    """How a worker died, as its task's crashes record it ("SIGSEGV", "exit code 17", "OOM
    kill", "hard timeout", "MemoryLimitExceeded"); None when qsup stopped it on purpose
    (cancel, shutdown, fence), which is no fault of the task."""
    if kill_reason in ("cancel", "shutdown", "fenced", "rescued"):
        return None
    if kill_reason == "timeout":
        return "hard timeout"
    if kill_reason == "memory":
        return "MemoryLimitExceeded"
    if oom_killed:
        return "OOM kill"
    return exit_label(code).removeprefix("signal ")
