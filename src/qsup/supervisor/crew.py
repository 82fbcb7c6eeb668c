"""The worker processes of the supervisor: started, scaled, recycled, killed and reaped here.

The crew owns the processes and their pipes in the arbiter's selector; the arbiter owns the
tasks they hold. When a worker dies the crew does the bookkeeping (exit log, crash counters,
backoff after start-up crashes) and hands the worker back so the arbiter settles its tasks.
"""

from __future__ import annotations

import os
import selectors
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from loguru import logger

from qsup import linux, log, protocol
from qsup.settings import Config
from qsup.supervisor import policy, pool
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.pool import Worker

MEMORY_CHECK_EVERY = 0.5  # seconds between samples of the busy workers' memory (with a limit)


class Crew:
    """The worker processes by pid, how many may run, and when the next one may start."""

    def __init__(
        self,
        config: Config,
        selector: selectors.BaseSelector,
        fork_lock: threading.Lock,
        counters: Counter[str],
        ledger: Ledger,
    ) -> None:
        self.config = config
        self.ledger = ledger  # what each worker holds
        self.selector = selector
        self.fork_lock = fork_lock  # the writer's ``busy``
        self.counters = counters  # shared with the arbiter
        self.max_workers = config.max_workers
        self.workers: dict[int, Worker] = {}
        self.next_spawn_at = 0.0
        self.boot_failures = 0
        self.oom_kills = linux.oom_kills()  # the cgroup's count, to tell an OOM kill apart
        self.next_memory_check = 0.0
        self.on_other_exit: Callable[[int, int, float], object] | None = None  # the HTTP child

    def busy(self, worker: Worker) -> bool:
        return self.ledger.load(worker.pid) > 0

    @property
    def spare(self) -> int:
        """Workers that could still be started: each may take a batch as soon as it is up."""
        return max(0, self.max_workers - len(self.workers))

    def deadlines(self, now: float, running: bool) -> list[float]:
        """When the loop must wake for the workers: a delayed start, a task's timeout, and
        (while running) the retirement of the idlest worker."""
        due = [self.next_spawn_at] if self.next_spawn_at > now else []
        if self.config.worker_memory_limit_mb and any(map(self.busy, self.workers.values())):
            due.append(self.next_memory_check)
        due.extend(w.deadline for w in self.workers.values() if w.deadline is not None)
        idle = [w.idle_since for w in self.workers.values() if not self.busy(w) and not w.retiring]
        if running and len(idle) > self.config.min_workers:
            due.append(min(idle) + self.config.worker_idle_timeout)
        return due

    # --- starting, scaling, stopping ------------------------------------------------------

    def _spawn(self, now: float) -> bool:
        """Fork a worker, unless the writer thread is mid-flush (a child must not inherit a
        lock it holds): then False, and a later pass tries again (the flush's end wakes the
        loop). Waiting for the lock stalled the whole loop for a flush, 20-150 ms."""
        if not self.fork_lock.acquire(blocking=False):
            return False
        try:
            used = {w.slot for w in self.workers.values()}
            slot = next(i for i in range(1, len(used) + 2) if i not in used)
            worker = pool.spawn(slot, self.config)
        finally:
            self.fork_lock.release()
        worker.idle_since = now
        self.workers[worker.pid] = worker
        self.selector.register(worker.conn.fileno(), selectors.EVENT_READ, worker)
        logger.debug("spawned worker {} (pid {})", slot, worker.pid)
        return True

    def on_ready(self, worker: Worker, now: float) -> None:
        """A worker booted: start-ups work again, so the respawn backoff starts over."""
        worker.ready, worker.idle_since = True, now
        self.boot_failures = 0

    def send(self, worker: Worker, message: object) -> None:
        """Stop, Drop or Inspect: losing one to a worker that just died is harmless."""
        try:
            worker.conn.send_bytes(protocol.encode(message))
        except OSError:
            pass  # already gone: the reaper will see it

    def _retire(self, worker: Worker, reason: str) -> None:
        if worker.retiring is None and worker.exit_code is None:
            worker.retiring = reason
            self.send(worker, protocol.Stop())

    def retire_all(self, reason: str) -> None:
        """Ask every worker to stop after its current job; it hands back the ones it holds."""
        for worker in self.workers.values():
            self._retire(worker, reason)

    def kill_all(self, reason: str) -> None:
        """SIGKILL every worker at once; ``reason`` decides what becomes of its task."""
        for worker in self.workers.values():
            pool.kill(worker, reason)

    def reload(self, config: Config) -> None:
        """Replace every worker, so the new configuration reaches the processes too."""
        self.config = config
        self.max_workers = config.max_workers
        self.retire_all("configuration reloaded")

    def resize(self, step: int) -> None:
        """SIGTTIN/SIGTTOU: ``step`` more workers allowed, never fewer than ``min_workers``."""
        self.max_workers = max(1, self.config.min_workers, self.max_workers + step)

    def scale(self, now: float, waiting: int) -> None:
        """Retire idle workers and those beyond ``max_workers``; start what the policy wants
        for ``waiting`` tasks."""
        live = [w for w in self.workers.values() if w.retiring is None]
        views = [
            policy.WorkerView(self.busy(w), w.idle_since, w.tasks_done, w.rss / 2**20) for w in live
        ]
        for i in policy.idle_to_retire(
            views, now, self.config.worker_idle_timeout, self.config.min_workers
        ):
            logger.info(
                "retiring worker {}: idle for {:g} s", live[i].slot, self.config.worker_idle_timeout
            )
            self._retire(live[i], "idle")
        for worker in sorted(live, key=self.busy)[: max(0, len(live) - self.max_workers)]:
            self._retire(worker, "max workers lowered")
        live = [w for w in self.workers.values() if w.retiring is None]
        free = sum(1 for w in live if not self.busy(w))
        wanted = policy.desired_spawns(
            len(live), free, waiting, self.config.min_workers, self.max_workers
        )
        if wanted and now >= self.next_spawn_at:
            for _ in range(wanted):
                if not self._spawn(now):
                    break

    def maybe_recycle(self, worker: Worker) -> None:
        """After results: replace a worker that ran too many tasks or grew too big."""
        recycle = policy.recycle_reason(
            worker.tasks_done,
            worker.rss / 2**20,
            self.config.max_tasks_per_worker,
            self.config.max_worker_memory_mb,
            worker.jitter,
        )
        if recycle:
            self.counters["recycled:" + recycle.kind] += 1
            log.event("worker_recycled").info(
                "recycling worker {} (pid {}): {}", worker.slot, worker.pid, recycle.reason
            )
            self._retire(worker, recycle.reason)

    def enforce_deadlines(self, now: float, drain_deadline: float | None) -> None:
        """Kill workers whose task overran its timeout or the memory limit, and every one once
        a drain is over."""
        if self.config.worker_memory_limit_mb and now >= self.next_memory_check:
            self._enforce_memory_limit(now)
        for worker in self.workers.values():
            if worker.deadline is not None and now >= worker.deadline and not worker.kill_reason:
                log.event("timeout", self.ledger.current(worker.pid)).warning(
                    "worker {} (pid {}) overran its task's timeout: killing it",
                    worker.slot,
                    worker.pid,
                )
                pool.kill(worker, "timeout")
        if drain_deadline is not None and now >= drain_deadline:
            for worker in self.workers.values():
                if not worker.kill_reason:
                    logger.warning(
                        "shutdown timeout: stopping worker {} and requeueing its task", worker.slot
                    )
                    pool.kill(worker, "shutdown")

    def _enforce_memory_limit(self, now: float) -> None:
        """Sample the busy workers' own memory (every ``MEMORY_CHECK_EVERY`` seconds, only
        with a limit set) and kill the ones past it mid-task."""
        self.next_memory_check = now + MEMORY_CHECK_EVERY
        limit = self.config.worker_memory_limit_mb
        for worker in self.workers.values():
            if not self.busy(worker) or worker.kill_reason:
                continue
            used = linux.unique_memory(worker.pid)
            if used is not None and used > limit * 2**20:
                worker.rss = used
                logger.warning(
                    "worker {} (pid {}) uses {:.0f} MB, over worker_memory_limit_mb={}: killing it",
                    worker.slot,
                    worker.pid,
                    used / 2**20,
                    limit,
                )
                pool.kill(worker, "memory")

    # --- exits ----------------------------------------------------------------------------

    def close_pipe(self, worker: Worker) -> None:
        """Stop watching a worker's pipe: it hung up, or the worker exited."""
        self.selector.unregister(worker.conn.fileno())
        worker.conn.close()

    def reap(self, last_words: Callable[[Worker], None]) -> Iterator[tuple[Worker, str]]:
        """Each worker that exited, gone from the crew, with how it ended, one at a time so
        its tasks are settled before the next exit is logged. ``last_words`` first reads what
        it said before dying: results, or the Ready that makes it no start-up crash."""
        for pid, code in pool.reap():
            worker = self.workers.get(pid)
            if worker is not None:
                yield worker, self._on_exit(worker, code, last_words)
            elif self.on_other_exit is not None:
                self.on_other_exit(pid, code, time.monotonic())

    def _on_exit(self, worker: Worker, code: int, last_words: Callable[[Worker], None]) -> str:
        now = time.monotonic()
        worker.exit_code = code
        if not worker.conn.closed:
            # It is dead, so all it wrote is here: a message it was cut off in the middle of
            # must end the reading (BlockingIOError), not block the loop.
            os.set_blocking(worker.conn.fileno(), False)
            last_words(worker)  # collect what it said before dying
            if not worker.conn.closed:
                self.close_pipe(worker)
        del self.workers[worker.pid]
        oom_killed = self._oom_killed(code)
        how = pool.describe_exit(code, worker.kill_reason, oom_killed)
        worker.crash = pool.crash_cause(code, worker.kill_reason, oom_killed)
        if not worker.ready and worker.retiring is None:
            self.boot_failures += 1
            self.counters["crashed:start-up"] += 1
            delay = policy.respawn_delay(self.boot_failures)
            self.next_spawn_at = now + delay
            logger.error(
                "worker {} (pid {}) died at start-up ({}); next start in {:g} s",
                worker.slot,
                worker.pid,
                how,
                delay,
            )
        elif worker.retiring and code == 0:
            logger.debug("worker {} (pid {}) retired: {}", worker.slot, worker.pid, worker.retiring)
        else:
            self.counters["crashed:" + (worker.kill_reason or pool.exit_label(code))] += 1
            log.event("worker_died", self.ledger.current(worker.pid)).warning(
                "worker {} (pid {}) died: {}", worker.slot, worker.pid, how
            )
        return how

    def _oom_killed(self, code: int) -> bool | None:
        """Did the kernel's OOM killer take a worker since the last exit? Read only for an
        unexplained SIGKILL; None when the cgroup does not say."""
        if code != -signal.SIGKILL or self.oom_kills is None:
            return None
        before, self.oom_kills = self.oom_kills, linux.oom_kills()
        return None if self.oom_kills is None else self.oom_kills > before
