"""Batched database writes of the supervisor: everything workers report, flushed together.

Entries stay here until a flush commits, so a database outage delays them but loses none
(every statement is idempotent: it only moves tasks still in ``picked_up``/``running``).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from qsup import protocol, repo
from qsup.protocol import Job, TaskId
from qsup.settings import Config
from qsup.supervisor import policy

FLUSH_AFTER = 0.02  # seconds an outcome may wait for company
STARTS_AFTER = 0.1  # seconds a start waits: most tasks end first, and their end writes it


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Outbox:
    """Pending writes, grouped by statement."""

    running: dict[TaskId, tuple[float, int]] = field(default_factory=dict)  # epoch, pid
    completed: list[tuple[TaskId, str, float, float, int]] = field(default_factory=list)
    retries: list[tuple[TaskId, float, str]] = field(default_factory=list)
    failures: list[tuple[TaskId, str, datetime | None]] = field(default_factory=list)
    releases: list[TaskId] = field(default_factory=list)
    cancels: list[TaskId] = field(default_factory=list)
    logs: list[tuple[TaskId, str, str, datetime]] = field(default_factory=list)
    contexts: dict[TaskId, str] = field(default_factory=dict)
    enqueues: list[repo.NewTask] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)  # shared with the arbiter
    since: float | None = None  # monotonic time of the oldest pending entry but starts

    def __len__(self) -> int:
        return (
            len(self.running)
            + len(self.completed)
            + len(self.retries)
            + len(self.failures)
            + len(self.releases)
            + len(self.cancels)
            + len(self.logs)
            + len(self.contexts)
            + len(self.enqueues)
        )

    def task_ids(self) -> set[TaskId]:
        """The tasks these entries are about (all still held by this server until written)."""
        ids = set(self.running) | set(self.releases) | set(self.cancels)
        for rows in (self.completed, self.retries, self.failures):
            ids.update(row[0] for row in rows)
        return ids

    def _touch(self, now: float) -> None:
        if self.since is None:
            self.since = now

    # --- recording ------------------------------------------------------------------------

    def started(self, task_id: TaskId, at: float, pid: int) -> None:
        self.running[task_id] = (at, pid)  # one per busy worker at most

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

    def finished(
        self, task: Job, msg: protocol.Finished, pid: int, config: Config, now: float
    ) -> None:
        """Record a job's end: completed, retried later, or failed for good."""
        self.running.pop(task.id, None)
        self._touch(now)
        if msg.outcome == "ok":
            assert msg.result is not None
            self.completed.append((task.id, msg.result, msg.started, msg.done, pid))
            self.counters["completed"] += 1
            return
        self.attempt_failed(
            task, msg.outcome, msg.error or "", msg.retry_delay, msg.started, config, now, msg.trace
        )

    def attempt_failed(
        self,
        task: Job,
        outcome: str,
        error: str,
        requested_delay: float | None,
        started: float | None,
        config: Config,
        now: float,
        trace: str | None = None,
    ) -> None:
        """A failed attempt: log it (with the full ``trace`` when ``error`` is a shortened
        traceback), then retry with backoff or fail when none is left."""
        self.running.pop(task.id, None)
        self._touch(now)
        delay = policy.after_failure(
            outcome,
            task.attempts,
            task.max_retries,
            requested_delay,
            config.retry_backoff_base,
            config.retry_backoff_max,
            random.random(),
        )
        summary = error.strip().splitlines()[-1] if error.strip() else outcome
        attempt = f"attempt {task.attempts}/{task.max_retries + 1}"
        self.counters["failed" if delay is None else "retried"] += 1
        if delay is None:
            self.failures.append((task.id, error, _ts(started) if started else None))
            self.log(task.id, "error", f"{attempt} failed, no retry left: {trace or error}", now)
            logger.bind(task_id=str(task.id)).warning("task {} failed: {}", task.name, summary)
        else:
            self.retries.append((task.id, delay, error))
            self.log(
                task.id, "error", f"{attempt} failed, retry in {delay:.1f} s: {trace or error}", now
            )
            logger.bind(task_id=str(task.id)).info(
                "task {} {} failed, retry in {:.1f} s: {}", task.name, attempt, delay, summary
            )

    def release(self, task_ids: list[TaskId], now: float) -> None:
        """Give tasks back to the queue without using an attempt."""
        for task_id in task_ids:
            self.running.pop(task_id, None)
        self.releases.extend(task_ids)
        self._touch(now)

    def cancel(self, task_ids: list[TaskId], now: float) -> None:
        """Tasks stopped on an operator's request."""
        for task_id in task_ids:
            self.running.pop(task_id, None)
            self.log(task_id, "cancelled", "cancelled by operator while held by this server", now)
        self.cancels.extend(task_ids)

    def log(
        self, task_id: TaskId, kind: str, message: str, now: float, at: float | None = None
    ) -> None:
        self.logs.append((task_id, kind, message, _ts(at) if at else datetime.now(UTC)))
        self._touch(now)

    def save_context(self, task_id: TaskId, context: str, now: float) -> None:
        self.contexts[task_id] = context
        self._touch(now)

    def enqueue(self, task: repo.NewTask, now: float) -> None:
        self.enqueues.append(task)
        self._touch(now)

    # --- flushing -------------------------------------------------------------------------

    def flush(self, conn: Any, server_id: int, channel: str | None) -> None:
        """Write everything in one transaction, or in autocommit when one statement does it
        (two round trips and a commit fewer: slow tasks flush one start or one end at a time);
        on error nothing is cleared (retry later: every statement is idempotent)."""
        with nullcontext() if self._one_statement() else conn.transaction():
            for task in self.enqueues:  # children first: their parents may complete below
                repo.insert_task(conn, task, channel)
            if self.contexts:
                repo.save_contexts(conn, list(self.contexts.items()))
            if self.running:
                repo.mark_running(
                    conn, server_id, [(i, _ts(at), pid) for i, (at, pid) in self.running.items()]
                )
            wake = self._write_outcomes(conn, server_id)
            if self.logs:
                repo.insert_logs(conn, self.logs)
            if channel is not None:
                for queue in sorted(wake):
                    repo.notify(conn, channel, queue)
        self.clear()

    def _one_statement(self) -> bool:
        """Only one kind of entry, written by one statement (the NOTIFYs after it are hints:
        they may commit on their own)."""
        kinds = (self.running, self.completed, self.retries, self.releases, self.logs,
                 self.contexts)  # fmt: skip
        chained = self.enqueues or self.failures or self.cancels  # several dependent statements
        return not chained and sum(1 for entries in kinds if entries) == 1

    def _write_outcomes(self, conn: Any, server_id: int) -> set[str]:
        """Completions, retries, failures, releases, cancels (with what they release or
        cancel in turn); returns the queues that got new work."""
        wake: set[str] = set()
        if self.completed:
            wake.update(repo.complete_batch(conn, server_id, self.completed))
        if self.retries:
            wake.update(queue for _, queue in repo.retry_batch(conn, server_id, self.retries))
        if self.failures:
            repo.cancel_dependents(conn, repo.fail_batch(conn, server_id, self.failures))
        if self.releases:
            wake.update(repo.release_batch(conn, server_id, self.releases))
        if self.cancels:
            repo.cancel_dependents(conn, repo.cancel_batch(conn, server_id, self.cancels))
        return wake

    def absorb(self, later: Outbox) -> None:
        """Append the entries of a later outbox after ours (ours were not written yet)."""
        for name in ("completed", "retries", "failures", "releases", "cancels", "logs", "enqueues"):
            getattr(self, name).extend(getattr(later, name))
        self.running.update(later.running)
        self.contexts.update(later.contexts)
        for task_id in {row[0] for row in later.completed} | {row[0] for row in later.failures}:
            self.running.pop(task_id, None)
        if later.since is not None:
            self.since = min(self.since or later.since, later.since)

    def salvage(self, conn: Any, server_id: int, error: str) -> None:
        """After PostgreSQL refused a flush: fail the tasks whose outcome could not be stored,
        so none stays held forever; drop the rest (logs, contexts, children)."""
        ids = self.task_ids() - set(self.releases) - set(self.cancels)
        message = f"qsup could not store this task's outcome: {error}"
        releases = list(self.releases)
        self.clear()
        if ids:
            repo.fail_batch(conn, server_id, [(i, message, None) for i in ids])
        if releases:
            repo.release_batch(conn, server_id, releases)

    def clear(self) -> None:
        for name in ("running", "contexts"):
            getattr(self, name).clear()
        for name in ("completed", "retries", "failures", "releases", "cancels", "logs", "enqueues"):
            getattr(self, name).clear()
        self.since = None
