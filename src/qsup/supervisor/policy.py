"""Pure decisions of the supervisor: no clock, no I/O, no processes. ``now`` is a parameter.

Each function takes a snapshot of the facts and the limits and returns a decision, so the
arbiter only applies them and the unit tests need no mocks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Container, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:
    from qsup.scheduler import Schedule

T = TypeVar("T")

MAX_HANDOFF = 128  # most tasks sent to one worker in one message


class WorkerView(NamedTuple):
    """What the scaling policy knows about one worker."""

    busy: bool
    idle_since: float
    tasks_done: int
    rss_mb: float
    retiring: bool = False


def desired_spawns(
    current: int, idle: int, waiting: int, min_workers: int, max_workers: int
) -> int:
    """How many workers to start now: up to the minimum, plus one for each waiting task that
    no free worker can take (at start-up the first claim brings up every worker it needs at
    once, not one per pass); never beyond the maximum."""
    below_min, unserved = min_workers - current, waiting - idle
    return max(0, min(max(below_min, unserved), max_workers - current))


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


class Recycle(NamedTuple):
    kind: str  # "max_tasks" or "memory": the label of the recycles counter
    reason: str  # for the log


RECYCLE_JITTER = 0.1  # workers recycle up to 10 % before their limit, each at its own point


def recycle_reason(
    tasks_done: int, rss_mb: float, max_tasks: int, max_memory_mb: int, jitter: float = 0.0
) -> Recycle | None:
    """Why a worker that just finished tasks should be replaced, or None. ``rss_mb`` is its
    unique memory; ``jitter`` in [0, 1), the worker's own, lowers the memory limit by up to
    ``RECYCLE_JITTER`` so workers that grow alike do not all restart together (gunicorn's
    max_requests_jitter; the task count stays exact, an operator's promise)."""
    if max_tasks and tasks_done >= max_tasks:
        return Recycle("max_tasks", f"ran {tasks_done} tasks (max_tasks_per_worker={max_tasks})")
    if max_memory_mb and rss_mb > max_memory_mb * (1 - RECYCLE_JITTER * jitter):
        return Recycle(
            "memory", f"unique RSS {rss_mb:.0f} MB near max_worker_memory_mb={max_memory_mb}"
        )
    return None


class Handoff(NamedTuple):
    """How work goes to a worker: ``cap`` jobs per message, at most ``depth`` held by it, and
    about ``ahead`` more claimed and kept here for each worker (what a claim tops up)."""

    cap: int
    depth: int
    ahead: int


SHORT_TASK = 1.0  # seconds: below this a worker holds the next job while it runs one (the
# round trip between two jobs cost 2-3 % of 50 ms tasks; it is nothing next to a second)
CLAIM_AHEAD = 0.2  # seconds of work per worker a claim may take beyond what workers hold: a
# claim per job cost 50 ms tasks 1-2 % of the CPU they could burn; another server waits no more


def handoff(avg_task_seconds: float | None, target_seconds: float = 0.02) -> Handoff:
    """Batches of about ``target_seconds`` of work, two deep so a worker never idles during a
    round trip, and claims of about ``CLAIM_AHEAD`` seconds of work per worker. An idle worker
    of this server gets back what waits behind a long task (the arbiter's ``_recall``), but no
    other server can: tasks of ``SHORT_TASK`` or more go one at a time, none held behind
    another, one kept here per worker. Unknown durations: one at a time."""
    if avg_task_seconds is None:
        return Handoff(1, 1, 1)
    if avg_task_seconds <= 0:
        return Handoff(MAX_HANDOFF, 2 * MAX_HANDOFF, MAX_HANDOFF)
    cap = max(1, min(MAX_HANDOFF, int(target_seconds / avg_task_seconds)))
    if avg_task_seconds >= SHORT_TASK:
        return Handoff(cap, cap, cap)
    ahead = max(cap, min(MAX_HANDOFF, int(CLAIM_AHEAD / avg_task_seconds)))
    return Handoff(cap, 2 * cap, ahead)


def recallable(jobs: Iterable[T], recalled: Container[T]) -> tuple[T, ...]:
    """The jobs a worker holds behind the one it runs, not yet asked back: it runs them in
    the order given, so the first is running or about to (asking for it would only bounce a
    lone task between two idle workers)."""
    return tuple(job for job in itertools.islice(jobs, 1, None) if job not in recalled)


def moving_average(average: float | None, sample: float, weight: float = 0.1) -> float:
    """Exponential moving average; the first sample stands alone."""
    return sample if average is None else average + weight * (sample - average)


def claim_size(
    in_flight: Sequence[int], spare: int, buffered: int, batch_limit: int, how: Handoff
) -> int:
    """How many tasks to claim: room in the accepting workers (``in_flight`` jobs each), plus
    ``how.ahead`` kept here for each of them and for each worker that could still be started
    (``spare``), minus what we hold. Small top-ups wait until one worker's worth is missing,
    unless nothing is held at all."""
    room = sum(max(0, how.depth - n) for n in in_flight) + (len(in_flight) + spare) * how.ahead
    room -= buffered
    if room < how.ahead and buffered > 0:
        return 0
    return max(0, min(batch_limit, room))


def refill_size(in_flight: int, buffered: int, consumers: int, how: Handoff) -> int:
    """Jobs to send a worker holding ``in_flight``: once at most one batch is left, top it up
    to the depth, sharing the buffer fairly among ``consumers``."""
    if buffered <= 0 or in_flight > how.depth - how.cap:
        return 0
    share = math.ceil(buffered / max(1, consumers))
    return max(1, min(how.depth - in_flight, how.cap, share))


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


def beat_interval(notify: bool, heartbeat: float, fallback_poll: float) -> float:
    """Seconds between heartbeats. Each beat also checks for due tasks, so with NOTIFY it is
    the fallback poll too: an idle server makes one query per interval."""
    return min(heartbeat, fallback_poll) if notify else heartbeat


def quarantine(crash_causes: Sequence[str], max_crashes: int) -> str | None:
    """The error of a task whose attempts have killed ``max_crashes`` workers or more (poison:
    no retry, whatever its retries), None while it may run again (or with 0: never)."""
    if not max_crashes or len(crash_causes) < max_crashes:
        return None
    return f"quarantined: killed {len(crash_causes)} workers ({', '.join(crash_causes)})"


def must_fence(lost_for: float | None, declared_dead: bool, fence_after: float) -> bool:
    """Stop this server's running tasks? When another server declared it dead (they were
    requeued), or once its liveness lock has been lost (``lost_for`` seconds, None: held) for
    ``fence_after``, before the others may declare it dead."""
    return declared_dead or (lost_for is not None and lost_for >= fence_after)


def seconds_to_next_tick(schedules: Sequence[Schedule], now: datetime, most: float) -> float:
    """Seconds from ``now`` to the first tick after it of any schedule, at most ``most``."""
    ticks = (spec.next_after(now) for spec in schedules)
    return min([most, *((tick - now).total_seconds() for tick in ticks)])


def reaches_ahead(avg_task_seconds: float | None) -> bool:
    """Whether tasks of a full limited queue may be claimed ahead of the slots this server
    holds: only when its tasks here are known to be short (under ``SHORT_TASK``), so the
    successor waits for a slot of ours briefly; a long one's would wait while another
    server's freed slot stays empty."""
    return avg_task_seconds is not None and avg_task_seconds < SHORT_TASK


def room_in_workers(in_flight: Sequence[int], spare: int) -> int:
    """Jobs the workers could start now: one for each idle worker and for each worker that
    could still be started. What a server may claim of a limited queue: nothing ahead (unlike
    :func:`claim_size`) and nothing queued behind a running job, since a claimed task holds its
    slot, so no server sits on a limited queue's tasks that another could start."""
    return sum(1 for n in in_flight if n == 0) + spare


def next_limited_try(retry_in: float | None, now: float, full_poll: float) -> float:
    """When to claim a limited queue again after its status ``retry_in`` (qsup_claim_limited):
    None nothing due (a NOTIFY wakes it), 0 at once (it took all it was offered), -1 full (when
    a slot frees here, else after ``full_poll``: another server's may free first), > 0 when its
    rate window opens."""
    if retry_in is None:
        return math.inf
    if retry_in < 0:
        return now + full_poll
    return now + retry_in


def prune_pause(due_in: float | None, ttl: float, least: float = 1.0, most: float = 60.0) -> float:
    """Seconds the pruner sleeps after its last, short batch: until the oldest finished task
    left passes the TTL (``due_in``; None when none is left), but at least ``least`` (what
    expires meanwhile goes in one batch: 2,000 tasks at 2,000/s) and at most ``most`` or the
    TTL (a task that finishes while it sleeps outlives its TTL by at most that; an idle server
    sends one statement a minute)."""
    longest = max(least, min(most, ttl))
    return longest if due_in is None else min(longest, max(least, due_in))
