"""What the supervisor has yet to write, grouped by statement: pure data, no SQL and no
decisions (the arbiter's settle step decides, the writer writes; compare pgqueuer's
``TimedOverflowBuffer`` and River's ``BatchCompleter``).

Entries stay here until a flush commits, so a database outage delays them but loses none
(every statement is idempotent: it only moves tasks still in ``picked_up``/``running``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from qsup import log, repo
from qsup.accounting import NO_USAGE, Usage
from qsup.protocol import Finished, Inspected, Progress, TaskId
from qsup.workflow import NewWorkflow

FLUSH_AFTER = 0.02  # seconds an outcome may wait for company
STARTS_AFTER = 0.1  # seconds a start waits: most tasks end first, and their end writes it


def timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


UNSTARTED = "before it started (held by this server)"


@dataclass
class Outbox:
    """Pending writes: each field but the last two is one kind of entry."""

    running: dict[TaskId, tuple[float, int]] = field(default_factory=dict)  # epoch, pid
    completed: list[tuple[TaskId, str, float, float, int, float, int, int]] = field(
        default_factory=list
    )
    retries: list[tuple[TaskId, float, str, str | None, Usage]] = field(default_factory=list)
    failures: list[tuple[TaskId, str, datetime | None, str | None, Usage, int | None]] = field(
        default_factory=list
    )
    releases: list[TaskId] = field(default_factory=list)
    cancels: list[TaskId] = field(default_factory=list)
    handed_on: list[TaskId] = field(default_factory=list)  # took over an ended task's slot
    logs: list[tuple[TaskId, str, str, datetime]] = field(default_factory=list)
    contexts: dict[TaskId, str] = field(default_factory=dict)
    progress: dict[TaskId, str] = field(default_factory=dict)  # the latest of each task, JSON
    probes: dict[TaskId, Inspected] = field(default_factory=dict)  # answers to operators
    enqueues: list[repo.NewTask | NewWorkflow] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)  # shared with the arbiter
    since: float | None = None  # monotonic time of the oldest pending entry but starts
    released: bool = False  # set by the flush: it made waiting tasks due (claim at once)

    def kinds(self) -> list[Any]:
        """Every kind's entries (a list or a dict), in declaration order."""
        return [getattr(self, name) for name in KINDS]

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.kinds())

    def task_ids(self) -> set[TaskId]:
        """The tasks these entries are about (all still held by this server until written)."""
        ids = set(self.running) | set(self.releases) | set(self.cancels)
        for rows in (self.completed, self.retries, self.failures):
            ids.update(row[0] for row in rows)
        return ids

    def touch(self, now: float) -> None:
        if self.since is None:
            self.since = now

    # --- recording ------------------------------------------------------------------------

    def started(self, task_id: TaskId, at: float, pid: int) -> None:
        self.running[task_id] = (at, pid)  # one per busy worker at most

    def completed_ok(self, msg: Finished, pid: int, now: float) -> None:
        assert msg.result is not None
        self.running.pop(msg.task_id, None)  # the completion writes the start too
        row = (msg.task_id, msg.result, msg.started, msg.done, pid, msg.cpu, msg.peak, msg.growth)
        self.completed.append(row)
        self.counters["completed"] += 1
        self.touch(now)

    def retry(
        self,
        task_id: TaskId,
        delay: float,
        error: str,
        now: float,
        crash: str | None = None,
        usage: Usage = NO_USAGE,
    ) -> None:
        """A failed attempt to run again after ``delay``; ``crash``: how its worker died."""
        self.running.pop(task_id, None)
        self.retries.append((task_id, delay, error, crash, usage))
        self.counters["retried"] += 1
        self.touch(now)

    def fail(
        self,
        task_id: TaskId,
        error: str,
        started: float | None,
        now: float,
        crash: str | None = None,
        usage: Usage = NO_USAGE,
        pid: int | None = None,
    ) -> None:
        """A task failed for good; ``pid``: the worker that ran its last attempt."""
        self.running.pop(task_id, None)
        started_at = timestamp(started) if started else None
        self.failures.append((task_id, error, started_at, crash, usage, pid))
        self.counters["failed"] += 1
        self.touch(now)

    def release(self, task_ids: list[TaskId], now: float) -> None:
        """Give tasks back to the queue without using an attempt."""
        for task_id in task_ids:
            self.running.pop(task_id, None)
        self.releases.extend(task_ids)
        self.touch(now)

    def cancel(self, task_ids: list[TaskId], now: float, what: str = UNSTARTED) -> None:
        """Tasks stopped on an operator's request; ``what``: when (unstarted, or running)."""
        for task_id in task_ids:
            self.running.pop(task_id, None)
            self.log(task_id, "cancelled", f"cancelled by operator {what}", now)
            log.event("cancelled", task_id).info("task cancelled {}", what)
        self.cancels.extend(task_ids)

    def hand_on(self, task_id: TaskId, now: float) -> None:
        """A task taken ahead now holds the slot of one whose outcome is in this outbox (so
        both are written in one transaction)."""
        self.handed_on.append(task_id)
        self.touch(now)

    def log(
        self, task_id: TaskId, kind: str, message: str, now: float, at: float | None = None
    ) -> None:
        self.logs.append((task_id, kind, message, timestamp(at) if at else datetime.now(UTC)))
        self.touch(now)

    def save_context(self, task_id: TaskId, context: str, now: float) -> None:
        self.contexts[task_id] = context
        self.touch(now)

    def reported(self, report: Progress | Inspected, now: float) -> None:
        """A task's progress (the latest is enough), or a worker's answer to an operator."""
        if isinstance(report, Progress):
            self.progress[report.task_id] = report.progress
        else:
            self.probes[report.task_id] = report
        self.touch(now)

    def enqueue(self, task: repo.NewTask | NewWorkflow, now: float) -> None:
        self.enqueues.append(task)
        self.touch(now)

    # --- timing and merging ---------------------------------------------------------------

    def due_at(self, now: float) -> float | None:
        """When (monotonic) to flush: soon after an outcome; for starts alone, once the oldest
        task has run ``STARTS_AFTER`` (most end before: their completion writes the start, in
        one update)."""
        due = [self.since + FLUSH_AFTER] if self.since is not None else []
        if self.running:
            oldest = min(at for at, _ in self.running.values())  # wall clock, as workers saw it
            due.append(now + oldest + STARTS_AFTER - time.time())
        return min(due, default=None)

    def split_young_starts(self) -> Outbox:
        """Take the starts of tasks running for less than ``STARTS_AFTER`` out, into an outbox
        of their own: a flush leaves them for later."""
        young = Outbox(counters=self.counters)
        wall = time.time()
        for task_id, (at, _) in list(self.running.items()):
            if wall - at < STARTS_AFTER:
                young.running[task_id] = self.running.pop(task_id)
        return young

    def absorb(self, later: Outbox) -> None:
        """Append the entries of a later outbox after ours (ours were not written yet)."""
        for mine, theirs in zip(self.kinds(), later.kinds(), strict=True):
            if isinstance(mine, dict):
                mine.update(theirs)
            else:
                mine.extend(theirs)
        for task_id in {row[0] for row in later.completed} | {row[0] for row in later.failures}:
            self.running.pop(task_id, None)
        if later.since is not None:
            self.since = min(self.since or later.since, later.since)

    def clear(self) -> None:
        for entries in self.kinds():
            entries.clear()
        self.since = None


KINDS = tuple(f.name for f in fields(Outbox) if f.name not in ("counters", "since", "released"))
