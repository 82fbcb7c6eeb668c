"""The arbiter's settle step: what becomes of a task whose attempt ended, or whose worker
died under it. The decisions are :mod:`qsup.supervisor.policy`'s; the outbox only records
them for the writer."""

from __future__ import annotations

import random
import time

from qsup import accounting, log, middleware, protocol
from qsup.accounting import NO_USAGE, Usage
from qsup.protocol import Job
from qsup.settings import Config
from qsup.supervisor import policy
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.outbox import Outbox
from qsup.supervisor.pool import Worker


def finished(
    outbox: Outbox, task: Job, msg: protocol.Finished, pid: int, config: Config, now: float
) -> None:
    """A job's end as its worker reported it: completed, retried later, or failed for good."""
    if msg.outcome == "ok":
        outbox.completed_ok(msg, pid, now)
        if log.debug_events:
            log.event("completed", task.id).debug("task {} completed", task.name)
        return
    if msg.outcome == "timeout":
        log.event("timeout", task.id).warning("task {} timed out", task.name)
    attempt_failed(
        outbox,
        task,
        msg.outcome,
        msg.error or "",
        msg.retry_delay,
        msg.started,
        config,
        now,
        usage=(msg.cpu, msg.peak, msg.growth),
        pid=pid,
    )


def dead_worker(
    ledger: Ledger, worker: Worker, how: str, keep: bool, config: Config, now: float
) -> None:
    """Settle what a dead worker held: the task it ran (see :func:`worker_died`), and the
    unstarted rest given back (kept in the buffer with ``keep``, else requeued; never after a
    fence: other servers may hold them now), or forgotten when another server took them."""
    started = ledger.started_at(worker.pid)
    current, rest = ledger.worker_gone(worker.pid)
    if current is not None:
        worker_died(ledger.outbox, current, worker, how, started, config, now)
    if worker.kill_reason == "rescued":
        ledger.forget(rest)
        return
    ledger.give_back(rest, keep and worker.kill_reason != "fenced", now)


def worker_died(
    outbox: Outbox,
    task: Job,
    worker: Worker,
    how: str,
    started: float | None,
    config: Config,
    now: float,
) -> None:
    """The task a worker was running when it exited: left alone (rescued: another server
    took it back), requeued without using an attempt (shutdown), cancelled, or a failed
    attempt: a fence (it ran: charged like a task of a dead server, no crash), a timeout, the
    memory ceiling or a crash, the last three counted as crashes; quarantined (failed
    whatever its retries) once its attempts have killed ``max_crashes`` workers. The
    ``on_worker_died`` hooks learn why first."""
    kill_reason = worker.kill_reason
    middleware.worker_died(config, task, kill_reason or "crash")
    if kill_reason == "rescued":  # another server's now: see liveness.fence
        return
    if kill_reason == "shutdown":
        outbox.release([task.id], now)
        return
    if kill_reason == "cancel":
        ran = f" after {max(time.time() - started, 0):.1f} s" if started is not None else ""
        outbox.cancel([task.id], now, f"while running: worker stopped{ran}")
        return
    if kill_reason == "fenced":  # written only if no other server took the task back first
        error = f"ServerFenced: this server lost its liveness lock while {task.name} ran; stopped"
        attempt_failed(outbox, task, "error", error, None, started, config, now, pid=worker.pid)
        return
    if kill_reason == "timeout":
        outcome, error = (
            "timeout",
            (
                f"TaskTimeout: {task.name} ran longer than {task.timeout:g} s and did not stop"
                f" within {config.timeout_grace:g} s; worker killed"
            ),
        )
    elif kill_reason == "memory":
        outcome, error = (
            "error",
            (
                f"MemoryLimitExceeded: worker used {worker.rss / 2**20:.0f} MB,"
                f" limit {config.worker_memory_limit_mb} MB"
            ),
        )
    else:
        outcome = "error"
        error = f"WorkerDied: worker pid {worker.pid} died running {task.name} ({how})"
    causes = [*(task.crash_causes or "").split(", "), worker.crash or ""]
    verdict = policy.quarantine([c for c in causes if c], config.max_crashes)
    if verdict is None:
        attempt_failed(
            outbox,
            task,
            outcome,
            error,
            None,
            started,
            config,
            now,
            crash=worker.crash,
            pid=worker.pid,
        )
        return
    outbox.fail(task.id, verdict, started, now, crash=worker.crash, pid=worker.pid)
    outbox.counters["quarantined"] += 1
    outbox.log(task.id, "error", f"attempt {task.attempts} failed: {error}; {verdict}", now)
    log.event("quarantined", task.id).error("task {} {}", task.name, verdict)


def attempt_failed(
    outbox: Outbox,
    task: Job,
    outcome: str,
    error: str,
    requested_delay: float | None,
    started: float | None,
    config: Config,
    now: float,
    crash: str | None = None,
    usage: Usage = NO_USAGE,
    pid: int | None = None,
) -> None:
    """A failed attempt: logged (with its traceback of the user's frames, and what it cost),
    then retried with backoff, or failed when none is left.
    ``crash``: how its worker died; ``pid``: that worker, kept on a failed task's row."""
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
    attempt = f"attempt {task.attempts}/{task.max_retries + 1}{accounting.describe(usage)}"
    if delay is None:
        outbox.fail(task.id, error, started, now, crash, usage, pid)
        outbox.log(task.id, "error", f"{attempt} failed, no retry left: {error}", now)
        task_log = log.event("failed", task.id).bind(outcome=outcome)
        task_log.warning("task {} failed: {}", task.name, summary)
    else:
        outbox.retry(task.id, delay, error, now, crash, usage)
        outbox.log(task.id, "error", f"{attempt} failed, retry in {delay:.1f} s: {error}", now)
        task_log = log.event("retried", task.id).bind(outcome=outcome, delay=delay)
        task_log.info(
            "task {} {} failed, retry in {:.1f} s: {}", task.name, attempt, delay, summary
        )
