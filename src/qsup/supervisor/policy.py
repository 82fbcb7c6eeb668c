"""Pure decisions of the supervisor: no clock, no I/O, no processes. ``now`` is a parameter.

Each function takes a snapshot of the facts and the limits and returns a decision, so the
arbiter only applies them and the unit tests need no mocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_HANDOFF = 128  # most tasks sent to one worker in one message


@dataclass(frozen=True)
class WorkerView:
    """What policies know about one worker."""

    busy: bool
    idle_since: float
    tasks_done: int
    rss_mb: float
    retiring: bool = False


def desired_spawns(
    current: int, idle: int, backlog: bool, min_workers: int, max_workers: int
) -> int:
    """How many workers to start now: up to the minimum, plus one more while work waits and
    no worker is free; never beyond the maximum."""
    if current < min_workers:
        return min_workers - current
    if backlog and idle == 0 and current < max_workers:
        return 1
    return 0


def idle_to_retire(
    workers: Sequence[WorkerView], now: float, idle_timeout: float, min_workers: int
) -> list[int]:
    """Indexes of idle workers to retire: idle longer than the timeout, longest idle first,
    keeping at least ``min_workers`` alive."""
    alive = sum(1 for w in workers if not w.retiring)
    stale = sorted(
        (
            i
            for i, w in enumerate(workers)
            if not w.retiring and not w.busy and now - w.idle_since >= idle_timeout
        ),
        key=lambda i: workers[i].idle_since,
    )
    return stale[: max(0, alive - min_workers)]


def recycle_reason(
    worker: WorkerView, max_tasks: int, max_memory_mb: int, jitter: int = 0
) -> str | None:
    """Why a worker that just finished a task should be replaced, or None."""
    if max_tasks and worker.tasks_done >= max_tasks + jitter:
        return f"ran {worker.tasks_done} tasks (max_tasks_per_worker={max_tasks})"
    if max_memory_mb and worker.rss_mb > max_memory_mb:
        return f"RSS {worker.rss_mb:.0f} MB above max_worker_memory_mb={max_memory_mb}"
    return None


def batch_cap(avg_task_seconds: float, target_seconds: float = 0.02) -> int:
    """Most tasks per hand-off: about ``target_seconds`` of work, so tiny tasks travel in
    batches while slow ones go one at a time and never queue behind each other."""
    if avg_task_seconds <= 0:
        return MAX_HANDOFF
    return max(1, min(MAX_HANDOFF, int(target_seconds / avg_task_seconds)))


def queue_depth(cap: int) -> int:
    """Jobs a worker may hold: two batches of tiny tasks (one running, one waiting, so the
    worker never idles during a round trip), but a single slow task (none waits behind it)."""
    return 2 * cap if cap > 1 else 1


def claim_size(
    in_flight: Sequence[int], spare: int, buffered: int, batch_limit: int, cap: int = MAX_HANDOFF
) -> int:
    """How many tasks to claim: room in the accepting workers (``in_flight`` jobs each) and in
    workers that could still be started (``spare``), minus what we hold. Small top-ups wait
    until a batch is worth it, unless nothing is held at all."""
    depth = queue_depth(cap)
    room = sum(max(0, depth - n) for n in in_flight) + spare * cap - buffered
    if room < cap and buffered > 0:
        return 0
    return max(0, min(batch_limit, room))


def refill_size(in_flight: int, buffered: int, consumers: int, cap: int = MAX_HANDOFF) -> int:
    """Jobs to send a worker holding ``in_flight``: once at most one batch is left, top it up
    to the queue depth, sharing the buffer fairly among ``consumers``."""
    depth = queue_depth(cap)
    if buffered <= 0 or in_flight > depth - cap:
        return 0
    share = math.ceil(buffered / max(1, consumers))
    return max(1, min(depth - in_flight, cap, share))


def retry_delay(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff with full jitter: ``attempt`` 1 waits about ``base``, then doubles.
    ``jitter`` in [0, 1) picks the point in the upper half of the window."""
    window = min(cap, base * 2 ** max(0, attempt - 1))
    return window / 2 + window / 2 * jitter


def after_failure(
    outcome: str,
    attempts: int,
    max_retries: int,
    requested_delay: float | None,
    base: float,
    cap: float,
    jitter: float,
) -> float | None:
    """Seconds before the next attempt, or None when the task has failed for good."""
    if outcome == "fatal" or attempts > max_retries:
        return None
    if requested_delay is not None:
        return max(0.0, requested_delay)
    return retry_delay(attempts, base, cap, jitter)


def respawn_delay(consecutive_boot_failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Wait before starting a worker again when workers keep dying at start-up."""
    if consecutive_boot_failures <= 0:
        return 0.0
    return min(cap, base * 2 ** (consecutive_boot_failures - 1))


def poll_interval(notify: bool, polling_interval: float, fallback_interval: float) -> float:
    """Seconds between polls: the safety net with NOTIFY, the plain interval without."""
    return fallback_interval if notify else polling_interval
