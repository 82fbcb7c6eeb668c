"""Outcomes the writer stored and the per-minute series (``qsup.series``) does not count yet.

The writer adds them to the series at most every :data:`EVERY` seconds, in one upsert on its
own connection after a flush (or when its thread idles), not in every flush: an upsert in
each flush's transaction cost the plain no-op drain 11 % (same run, --workers 2: 4,016/s
against 4,511/s), one a second costs nothing measurable. What a crash loses is the last
second's counts, never a task.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from loguru import logger

from qsup import series
from qsup.protocol import TaskId
from qsup.supervisor.outbox import Outbox

EVERY = 1.0  # seconds between a server's series upserts
Outcomes = tuple[list[TaskId], list[TaskId], list[TaskId]]  # completed, failed, retried


class Tally:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.completed: list[TaskId] = []
        self.failed: list[TaskId] = []
        self.retried: list[TaskId] = []
        self.last = clock()

    @staticmethod
    def outcomes(outbox: Outbox) -> Outcomes:
        """The ids of an outbox's outcomes (taken before the flush clears it)."""
        return (
            [row[0] for row in outbox.completed],
            [row[0] for row in outbox.failures],
            [row[0] for row in outbox.retries],
        )

    def add(self, written: Outcomes) -> None:
        """Outcomes of a flush that was written."""
        completed, failed, retried = written
        self.completed += completed
        self.failed += failed
        self.retried += retried

    def pending(self) -> bool:
        return bool(self.completed or self.failed or self.retried)

    def wait(self) -> float | None:
        """Seconds until the pending outcomes are due (None: nothing pending)."""
        return max(0.0, self.last + EVERY - self.clock()) if self.pending() else None

    def due(self) -> bool:
        return self.pending() and self.clock() - self.last >= EVERY

    def take(self) -> Outcomes:
        """The pending outcomes, now no longer pending (the next are due in :data:`EVERY`
        seconds, whether these get written or not: the database may be away)."""
        self.last = self.clock()
        batch = (self.completed, self.failed, self.retried)
        self.completed, self.failed, self.retried = [], [], []
        return batch


def record(conn: Any, server_id: int, batch: Outcomes) -> None:
    """Add outcomes to the series (autocommit: one statement). A statement PostgreSQL refuses
    is logged and its counts dropped: statistics must never hold up results (a lost
    connection goes to the writer's link, which reconnects)."""
    try:
        series.record(conn, server_id, *batch)
    except psycopg.OperationalError:
        raise
    except Exception:  # noqa: BLE001 - a lost second of counts, not a lost task
        logger.opt(exception=True).warning(
            "could not add {} outcomes to the per-minute series", sum(map(len, batch))
        )
