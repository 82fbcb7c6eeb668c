"""Messages between the supervisor and its workers, pickled over ``multiprocess`` pipes.

Supervisor → worker: :class:`Assign`, :class:`Drop`, :class:`Stop`, :class:`Inspect`.
Worker → supervisor: :class:`Ready`, :class:`Started`, :class:`Results`, :class:`Released`,
:class:`Log`, :class:`SaveContext`, :class:`Enqueue`, :class:`Progress`, :class:`Inspected`.
Plain ``pickle`` (not dill) keeps the hot path cheap: every message is a ``NamedTuple`` (pickled
by the C fast path, about 4x cheaper than a dataclass) and task ids travel as text.
"""

from __future__ import annotations

import pickle
import select
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

Outcome = Literal["ok", "error", "retry", "fatal", "timeout"]
TaskId = str  # a task's uuid as text: ids only travel and key dicts in the hot path


class Job(NamedTuple):
    """A claimed task, as the claim returns it and as it travels to a worker (no conversion
    in between). Arguments and context stay JSON text until the worker decodes them: the
    supervisor only forwards them, so it never pays for parsing."""

    id: TaskId
    name: str
    args: str
    kwargs: str
    timeout: float  # the task's own, else the configured default
    attempts: int  # this one included
    max_retries: int
    context: str
    queue: str = "default"
    headers: str | None = None  # JSON text; None when the task has none (most)
    crash_causes: str | None = None  # how the workers it killed died, "SIGKILL, SIGSEGV"


class Assign(NamedTuple):
    """Run these jobs in order."""

    jobs: tuple[Job, ...]


class Stop(NamedTuple):
    """Finish the current job, give back the jobs not started, and exit."""


class Drop(NamedTuple):
    """Do not start these jobs (cancelled): give them back in a ``Released``."""

    task_ids: tuple[TaskId, ...]


class Inspect(NamedTuple):
    """An operator asks what this task is doing: answer with an ``Inspected``."""

    task_id: TaskId


class Ready(NamedTuple):
    """The worker booted and waits for jobs."""

    pid: int


class Started(NamedTuple):
    task_id: TaskId
    at: float


class Finished(NamedTuple):
    """A job ended; ``result`` is JSON text for ``ok``, ``error`` a message or the traceback
    of the user's frames."""

    task_id: TaskId
    outcome: Outcome
    started: float
    done: float
    result: str | None = None
    error: str | None = None
    retry_delay: float | None = None
    rss: int = 0  # the worker's unique memory after it (bytes; 0: not measured)
    cpu: float = 0.0  # seconds of CPU (user + system) the worker used for it
    peak: int = 0  # the worker's peak RSS during it, bytes
    growth: int = 0  # how much its unique memory grew across it, bytes


class Results(NamedTuple):
    """Several ``Finished`` in one message: tiny tasks report in batches (a few ms at most)."""

    finished: tuple[Finished, ...]


class Released(NamedTuple):
    """Jobs assigned but never started (the worker was told to stop)."""

    task_ids: tuple[TaskId, ...]


class Log(NamedTuple):
    task_id: TaskId
    type: str
    message: str
    at: float


class SaveContext(NamedTuple):
    task_id: TaskId
    context: str


class Enqueue(NamedTuple):
    """A task added from inside a task (``current_task.add_task``); the supervisor inserts it."""

    task: Any  # repo.NewTask; typed loosely to keep this module free of imports


class Progress(NamedTuple):
    """The task's latest ``current_task.progress()``, as JSON text (at most one a second)."""

    task_id: TaskId
    progress: str


class Inspected(NamedTuple):
    """The answer to an ``Inspect``: the task's live stack (None: the worker no longer runs
    it), and what it has cost so far."""

    task_id: TaskId
    stack: str | None
    cpu: float = 0.0  # seconds of CPU the worker used since the task started
    rss: int = 0  # the worker's resident memory now, bytes
    running: float = 0.0  # seconds since the task started


def encode(message: object) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    return pickle.loads(data)  # noqa: S301 - only our own processes write to these pipes


def waiting(fd: int) -> Callable[[], bool]:
    """A cheap "has this pipe a message (or EOF) to read?": ``Connection.poll(0)`` of
    ``multiprocess`` builds a selector per call, about 9 us, paid once per job."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return lambda: bool(poller.poll(0))
