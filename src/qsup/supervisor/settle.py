"""The arbiter's settle step: what becomes of a task whose attempt ended, or whose worker
died under it. The decisions are :mod:`qsup.supervisor.policy`'s; the outbox only records
them for the writer."""

from __future__ import annotations

import random

from loguru import logger

from qsup import protocol
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
        assert msg.result is not None
        outbox.completed_ok(task.id, msg.result, msg.started, msg.done, pid, now)
        return
    attempt_failed(
        outbox,
        task,
        msg.outcome,
        msg.error or "",
        msg.retry_delay,
        msg.started,
        config,
        now,
        msg.trace,
    )


def dead_worker(
    ledger: Ledger, worker: Worker, how: str, keep: bool, config: Config, now: float
) -> None:
    """Settle what a dead worker held: the task it ran (see :func:`worker_died`), and the
    unstarted rest given back (kept in the buffer with ``keep``, else requeued)."""
    started = ledger.started_at(worker.pid)
    current, rest = ledger.worker_gone(worker.pid)
    if current is not None:
        outbox = ledger.outbox
        worker_died(outbox, current, worker.kill_reason, how, worker.pid, started, config, now)
    ledger.give_back(rest, keep and worker.kill_reason != "fenced", now)


def worker_died(
    outbox: Outbox,
    task: Job,
    kill_reason: str | None,
    how: str,
    pid: int,
    started: float | None,
    config: Config,
    now: float,
) -> None:
    """The task a worker was running when it exited: requeued (shutdown), cancelled, or a
    failed attempt (timeout, crash)."""
    if kill_reason in ("shutdown", "fenced"):
        outbox.release([task.id], now)
    elif kill_reason == "cancel":
        outbox.cancel([task.id], now)
    elif kill_reason == "timeout":
        error = (
            f"TaskTimeout: {task.name} ran longer than {task.timeout:g} s and did not stop"
            f" within {config.timeout_grace:g} s; worker killed"
        )
        attempt_failed(outbox, task, "timeout", error, None, started, config, now)
    else:
        error = f"WorkerDied: worker pid {pid} died running {task.name} ({how})"
        attempt_failed(outbox, task, "error", error, None, started, config, now)


def attempt_failed(
    outbox: Outbox,
    task: Job,
    outcome: str,
    error: str,
    requested_delay: float | None,
    started: float | None,
    config: Config,
    now: float,
    trace: str | None = None,
) -> None:
    """A failed attempt: logged (with the full ``trace`` when ``error`` is a shortened
    traceback), then retried with backoff, or failed when none is left."""
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
    task_log = logger.bind(task_id=str(task.id))
    if delay is None:
        outbox.fail(task.id, error, started, now)
        outbox.log(task.id, "error", f"{attempt} failed, no retry left: {trace or error}", now)
        task_log.warning("task {} failed: {}", task.name, summary)
    else:
        outbox.retry(task.id, delay, error, now)
        outbox.log(
            task.id, "error", f"{attempt} failed, retry in {delay:.1f} s: {trace or error}", now
        )
        task_log.info(
            "task {} {} failed, retry in {:.1f} s: {}", task.name, attempt, delay, summary
        )
