"""The jobs a worker holds, fed from its pipe.

The main thread reads the pipe between jobs. While a job runs, the reporter's thread reads it
too (``read_waiting``), so a ``Drop`` is answered at once: a job queued behind a long one can be
cancelled, or called back by the supervisor for a worker that idles, without waiting for the long
one to end; and an ``Inspect`` is answered while the job runs. Every read and every change of
the queue happens under one lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from loguru import logger

from qsup import context, protocol


class Mailbox:
    def __init__(self, conn: Any, inspect: Callable[[protocol.TaskId], None]) -> None:
        self._conn = conn
        self._inspect = inspect
        self._waiting = protocol.waiting(conn.fileno())
        self._lock = threading.Lock()
        self._jobs: deque[protocol.Job] = deque()
        self.stopped = False  # a Stop arrived: finish the current job, give back the rest

    def __len__(self) -> int:
        return len(self._jobs)

    def next_job(self, block: bool) -> protocol.Job | None:
        """Take the messages already in the pipe (with ``block``, first wait for one), then
        the next job to run: None after a Stop, or when a Drop took the last one. It does not
        wait when the reporter's thread, in a last tick as the worker went idle, already took
        jobs or a Stop: their message is gone from the pipe, and waiting would hang with them
        held."""
        with self._lock:
            if block and not self._jobs and not self.stopped:
                self._take(self._conn.recv_bytes())
            self._take_waiting()
            return None if self.stopped or not self._jobs else self._jobs.popleft()

    def read_waiting(self) -> None:
        """For the reporter's thread, while a job runs: take the messages already there. A
        closed pipe is the main thread's to notice."""
        try:
            with self._lock:
                self._take_waiting()
        except (EOFError, OSError):
            pass

    def release_all(self) -> None:
        """After a Stop: give back every job not started."""
        with self._lock:
            if self._jobs:
                context.send(protocol.Released(tuple(job.id for job in self._jobs)))
            self._jobs.clear()

    def _take_waiting(self) -> None:
        while not self.stopped and self._waiting():
            self._take(self._conn.recv_bytes())

    def _take(self, raw: bytes) -> None:
        message = protocol.decode(raw)
        if isinstance(message, protocol.Stop):
            self.stopped = True
        elif isinstance(message, protocol.Drop):
            dropped = [job for job in self._jobs if job.id in message.task_ids]
            for job in dropped:
                self._jobs.remove(job)
            context.send(protocol.Released(tuple(job.id for job in dropped)))
        elif isinstance(message, protocol.Assign):
            self._jobs.extend(message.jobs)
        elif isinstance(message, protocol.Inspect):
            self._inspect(message.task_id)
        else:  # a supervisor of another version: say so rather than guess
            logger.warning("worker ignored an unknown message from the supervisor: {!r}", message)
