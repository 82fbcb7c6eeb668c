"""Messages between the supervisor and its workers, pickled over ``multiprocess`` pipes.

Supervisor → worker: :class:`Assign`, :class:`Drop`, :class:`Stop`.
Worker → supervisor: :class:`Ready`, :class:`Started`, :class:`Results`, :class:`Released`,
:class:`Log`, :class:`SaveContext`, :class:`Enqueue`.
Plain ``pickle`` (not dill) keeps the hot path cheap; every message is a small frozen dataclass.
"""

from __future__ import annotations

import pickle
import uuid
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["ok", "error", "retry", "fatal", "timeout"]


@dataclass(frozen=True, slots=True)
class Job:
    """One task as a worker sees it. Arguments and context stay JSON text until the worker
    decodes them: the supervisor only forwards them, so it never pays for parsing."""

    id: uuid.UUID
    name: str
    args: str
    kwargs: str
    timeout: float
    attempt: int
    context: str


@dataclass(frozen=True, slots=True)
class Assign:
    """Run these jobs in order."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Stop:
    """Finish the current job, give back the jobs not started, and exit."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Do not start these jobs (cancelled): give them back in a ``Released``."""

    task_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker booted and waits for jobs."""

    pid: int


@dataclass(frozen=True, slots=True)
class Started:
    task_id: uuid.UUID
    at: float


@dataclass(frozen=True, slots=True)
class Finished:
    """A job ended; ``result`` is JSON text for ``ok``, ``error`` a message or traceback."""

    task_id: uuid.UUID
    outcome: Outcome
    started: float
    done: float
    result: str | None = None
    error: str | None = None
    retry_delay: float | None = None
    rss: int = 0


@dataclass(frozen=True, slots=True)
class Results:
    """Several ``Finished`` in one message: tiny tasks report in batches (a few ms at most)."""

    finished: tuple[Finished, ...]


@dataclass(frozen=True, slots=True)
class Released:
    """Jobs assigned but never started (the worker was told to stop)."""

    task_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class Log:
    task_id: uuid.UUID
    type: str
    message: str
    at: float


@dataclass(frozen=True, slots=True)
class SaveContext:
    task_id: uuid.UUID
    context: str


@dataclass(frozen=True, slots=True)
class Enqueue:
    """A task added from inside a task (``current_task.add_task``); the supervisor inserts it."""

    task: Any  # repo.NewTask; typed loosely to keep this module free of imports


def encode(message: object) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    return pickle.loads(data)  # noqa: S301 - only our own processes write to these pipes
