"""Every task a server holds, from its claim until its outcome is written, in one place.

A held task is *claimed* (in the buffer), *assigned* to a worker (in that worker's jobs, in
hand-out order), *running* (its worker's current job), possibly *recalled* (asked back with a
Drop) or *cancelling* (an operator cancelled it while it sat in a worker), and finally
*unwritten* (its outcome in the outbox, or in the batch the writer is writing). Each change is a
named method here, as River's producer keeps one map of active jobs and Oban's producer one of
running jobs; :class:`~qsup.supervisor.pool.Worker` keeps only process facts.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from qsup.protocol import Job, TaskId
from qsup.supervisor import policy
from qsup.supervisor.outbox import Outbox


class Ledger:
    def __init__(self, counters: Counter[str]) -> None:
        self.buffer: deque[Job] = deque()  # claimed, not handed out
        self.ahead: deque[Job] = deque()  # claimed ahead of a limited queue's slots (flow.py)
        self._jobs: dict[int, dict[TaskId, Job]] = {}  # worker pid -> assigned, unfinished
        self._running: dict[int, tuple[TaskId, float]] = {}  # worker pid -> task, wall start
        self._recalled: dict[int, set[TaskId]] = {}  # asked back, not yet answered
        self._cancelling: set[TaskId] = set()  # cancelled while queued in a worker
        self.outbox = Outbox(counters=counters)  # outcomes not yet handed to the writer
        self.writing: Outbox | None = None  # the batch the writer is writing

    # --- what a worker holds --------------------------------------------------------------

    def load(self, pid: int) -> int:
        """Jobs assigned to a worker and not finished (the running one included)."""
        jobs = self._jobs.get(pid)
        return len(jobs) if jobs else 0

    def current(self, pid: int) -> TaskId | None:
        running = self._running.get(pid)
        return running[0] if running else None

    def held_by(self, pid: int) -> set[TaskId]:
        """The tasks assigned to a worker and not finished."""
        return set(self._jobs.get(pid, ()))

    def next_job(self, pid: int) -> TaskId | None:
        """The job a worker runs next: the first it holds."""
        return next(iter(self._jobs.get(pid, ())), None)

    def ids(self) -> set[TaskId]:
        """Every task held, whatever its state (for reconciling with the database)."""
        held = {t.id for t in self.buffer} | {t.id for t in self.ahead} | self.outbox.task_ids()
        for jobs in self._jobs.values():
            held.update(jobs)
        if self.writing is not None:
            held |= self.writing.task_ids()
        return held

    # --- transitions ----------------------------------------------------------------------

    def claimed(self, jobs: list[Job]) -> None:
        self.buffer.extend(jobs)

    def assigned_ids(self) -> set[TaskId]:
        """Tasks buffered or with a worker, not ended."""
        ids = {t.id for t in self.buffer}
        for jobs in self._jobs.values():
            ids.update(jobs)
        return ids

    def claimed_first(self, jobs: list[Job]) -> None:
        """Jobs of limited queues: claimed for workers that can start them now, so ahead of
        what was claimed in advance."""
        self.buffer.extendleft(reversed(jobs))

    def hand_out(self, pid: int, count: int) -> tuple[Job, ...]:
        """The next ``count`` buffered jobs, now assigned to worker ``pid``."""
        tasks = tuple(self.buffer.popleft() for _ in range(count))
        self._jobs.setdefault(pid, {}).update((t.id, t) for t in tasks)
        return tasks

    def not_delivered(self, pid: int, tasks: tuple[Job, ...]) -> None:
        """The hand-out never reached the worker: back to the front of the buffer."""
        jobs = self._jobs[pid]
        for task in tasks:
            del jobs[task.id]
        self.buffer.extendleft(reversed(tasks))

    def start(self, pid: int, task_id: TaskId, at: float) -> Job:
        self._running[pid] = (task_id, at)
        return self._jobs[pid][task_id]

    def started_at(self, pid: int) -> float | None:
        running = self._running.get(pid)
        return running[1] if running else None

    def finish(self, pid: int, task_id: TaskId) -> tuple[Job, bool]:
        """A job the worker ended; and whether it was being cancelled (it ran before the
        worker read our Drop)."""
        job = self._jobs[pid].pop(task_id)
        if self.current(pid) == task_id:
            del self._running[pid]
        recalled = self._recalled.get(pid)
        if recalled:
            recalled.discard(task_id)  # it ran before our Drop reached the worker
        cancelled = task_id in self._cancelling
        self._cancelling.discard(task_id)
        return job, cancelled

    def released(self, pid: int, task_ids: tuple[TaskId, ...]) -> list[Job]:
        """Jobs a worker gave back unstarted (after a Drop or a Stop)."""
        recalled = self._recalled.get(pid)
        if recalled:
            recalled.difference_update(task_ids)
        if self.current(pid) in task_ids:
            del self._running[pid]
        jobs = self._jobs[pid]
        return [jobs.pop(i) for i in task_ids]

    def worker_gone(self, pid: int) -> tuple[Job | None, list[Job]]:
        """A worker died: the job it was running (if it had started one) and the rest."""
        jobs = self._jobs.pop(pid, {})
        running = self._running.pop(pid, None)
        self._recalled.pop(pid, None)
        current = jobs.pop(running[0], None) if running else None
        return current, list(jobs.values())

    def give_back(self, tasks: list[Job], keep: bool, now: float) -> None:
        """Tasks a worker never started: cancelled ones are marked so; the rest go back to
        the buffer (``keep``, while running), else to the queue."""
        dropped = [t.id for t in tasks if t.id in self._cancelling]
        if dropped:
            self._cancelling.difference_update(dropped)
            self.outbox.cancel(dropped, now)
            tasks = [t for t in tasks if t.id not in dropped]
        if keep:
            self.buffer.extendleft(reversed(tasks))
        else:
            self.outbox.release([t.id for t in tasks], now)

    def recall(self, pid: int) -> tuple[TaskId, ...]:
        """The jobs to ask back from a worker: those behind the one it runs, not asked yet."""
        recalled = self._recalled.setdefault(pid, set())
        queued = policy.recallable(self._jobs.get(pid, {}), recalled)
        recalled.update(queued)
        return queued

    def cancel(self, task_ids: set[Any], now: float) -> dict[int, tuple[TaskId, ...]]:
        """Cancel what we hold of ``task_ids``: buffered ones (or taken ahead) at once; for
        each worker, the queued ones to Drop (returned by pid). Running ones are the caller's
        to stop."""
        held = [t.id for t in (*self.buffer, *self.ahead) if t.id in task_ids]
        if held:
            self.buffer = deque(t for t in self.buffer if t.id not in task_ids)
            self.ahead = deque(t for t in self.ahead if t.id not in task_ids)
            self.outbox.cancel(held, now)
        drops: dict[int, tuple[TaskId, ...]] = {}
        for pid, jobs in self._jobs.items():
            current = self.current(pid)
            queued = tuple(i for i in jobs if i in task_ids and i != current)
            if queued:
                self._cancelling.update(queued)
                drops[pid] = queued
        return drops

    def release_buffer(self, now: float) -> None:
        """Stop holding what no worker has: back to the queue without using an attempt."""
        if self.buffer:
            self.outbox.release([t.id for t in self.buffer], now)
            self.buffer.clear()
        self.release_ahead(lambda job: True, now)

    def release_ahead(self, which: Callable[[Job], bool], now: float) -> None:
        """Give back the tasks claimed ahead for which ``which(job)`` is true."""
        gone = [t for t in self.ahead if which(t)]
        if gone:
            self.outbox.release([t.id for t in gone], now)
            self.ahead = deque(t for t in self.ahead if not which(t))

    def forget_buffer(self) -> None:
        """Another server requeued what we claimed (we were declared dead): not ours now."""
        self.buffer.clear()
        self.ahead.clear()

    def forget(self, tasks: list[Job]) -> None:
        """Jobs of a worker killed because another server took them back: not ours now."""
        self._cancelling.difference_update(t.id for t in tasks)

    # --- writing --------------------------------------------------------------------------

    def take_for_writing(self) -> Outbox | None:
        """The outbox to write now, leaving the starts of tasks that only just began (most end
        first, and their end writes the start); None when only those are left."""
        batch, self.outbox = self.outbox, self.outbox.split_young_starts()
        if not len(batch):
            return None
        self.writing = batch
        return batch

    def written(self, batch: Outbox, ok: bool) -> None:
        """The writer is done with ``batch``; unwritten entries (database away) go first."""
        self.writing = None
        if not ok:
            batch.absorb(self.outbox)
            self.outbox = batch
