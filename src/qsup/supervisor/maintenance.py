"""The supervisor's maintenance services, each with its own cadence (River's
``internal/maintenance``, Oban's Lifeline): :meth:`deadline` says when it wants to run next
(monotonic seconds), :meth:`run_once` does one round on the supervisor's connection.
:class:`~qsup.supervisor.housekeeping.Housekeeper` composes them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from loguru import logger

from qsup import log, repo, schedule_store, scheduler, workflow_store
from qsup.protocol import TaskId
from qsup.settings import Config
from qsup.supervisor import policy

Conn = psycopg.Connection[Any]
CRON_WAKE_AT_LEAST_EVERY = 60.0  # seconds: a wall-clock jump is caught up within a minute
NEVER = float("inf")


@dataclass
class Chores:
    """What the arbiter must act on after a round of maintenance."""

    cancel: set[TaskId] = field(default_factory=set)
    inspect: set[TaskId] = field(default_factory=set)  # operators look inside these tasks
    new_work: bool = False
    declared_dead: bool = False
    stalled: bool = False  # due work of our queues waits while our workers idle


@dataclass
class Round:
    """What the services of one round share: the time, the server's facts, what they found."""

    now: float
    config: Config
    server_id: int
    workers: tuple[int, int, int]  # max, busy, idle
    connected_for: float  # seconds since the connection was made
    chores: Chores = field(default_factory=Chores)


class Service(Protocol):
    def deadline(self) -> float:
        """Monotonic time of the next run (``NEVER``: nothing to do)."""

    def schedule(self, r: Round) -> None:
        """Set the next deadline; called before :meth:`run_once`, which may not happen while
        the database is away."""

    def run_once(self, conn: Conn, r: Round) -> None: ...


class Heartbeat:
    """Refresh this server's row, declare silent servers dead, pick up cancel requests and due
    tasks; tell the rescuer when dead servers left tasks."""

    def __init__(self, counters: Counter[str], rescuer: Rescuer) -> None:
        self.counters = counters  # the server's running totals, written by each beat
        self.rescuer = rescuer
        self.next_at = 0.0

    def deadline(self) -> float:
        return self.next_at

    def beat_by(self, when: float) -> None:
        self.next_at = min(self.next_at, when)

    def schedule(self, r: Round) -> None:
        config = r.config
        self.next_at = r.now + policy.beat_interval(
            config.use_postgresql_notify,
            config.heartbeat_interval,
            config.fallback_polling_interval,
        )

    def run_once(self, conn: Conn, r: Round) -> None:
        # Just (re)connected: others' beats may be stale because the database was away.
        may_declare = r.connected_for >= r.config.server_timeout
        queues, timeout = r.config.queues, r.config.server_timeout
        beat = repo.heartbeat(
            conn, r.server_id, r.workers, self.counters, queues, timeout, may_declare
        )
        if not beat.was_running:
            logger.warning(
                "this server had been declared dead by another (its tasks were"
                " rescued); it is running again"
            )
            r.chores.declared_dead = True
        for name in beat.declared_dead:
            logger.warning("server {} missed its heartbeats: marked dead", name)
        if beat.orphans:
            self.rescuer.pending = True
        r.chores.cancel.update(beat.cancel)
        r.chores.inspect.update(beat.inspect)
        r.chores.new_work |= beat.due


class Rescuer:
    """Take back the tasks of servers declared dead: the ones that never started keep their
    attempt; the running ones are charged (see the ``rescue_orphans`` query)."""

    def __init__(self) -> None:
        self.pending = False

    def deadline(self) -> float:
        return 0.0 if self.pending else NEVER

    def schedule(self, r: Round) -> None:
        self.pending = False

    def run_once(self, conn: Conn, r: Round) -> None:
        with conn.transaction():  # a failure and its consequences (compensations) commit together
            rescued = repo.rescue_orphans(conn, r.config.max_crashes)
            failed = [task.id for task in rescued if task.state == "failed"]
            if failed:  # no attempt left, or quarantined: their dependents will never run
                workflow_store.settle_failures(conn, failed, "failed", r.config.wake_channel)
        if rescued:
            verdicts = Counter(task.verdict for task in rescued)
            log.event("rescued").warning(
                "rescued {} task(s) from dead servers: {} never started (no attempt used),"
                " {} ran (charged: {} retried, {} failed), {} quarantined",
                len(rescued),
                verdicts["requeue"],
                verdicts["retry"] + verdicts["fail"],
                verdicts["retry"],
                verdicts["fail"],
                verdicts["quarantine"],
            )
            r.chores.new_work = True


class Cron:
    """Declare this server's schedules in the database (at start and at each reload: so that
    every `qsup schedule` command works from the URL alone), then enqueue due ticks; sleeps
    until the next tick of any schedule (validated once, at start and at each reload, by the
    caller)."""

    def __init__(self, schedules: Sequence[scheduler.Schedule]) -> None:
        self.schedules = schedules
        self.declared = not schedules  # a server without schedules writes nothing
        self.next_at = 0.0

    def deadline(self) -> float:
        return self.next_at if self.schedules or not self.declared else NEVER

    def reload(self, schedules: Sequence[scheduler.Schedule]) -> None:
        self.schedules = schedules
        self.declared = False  # also when none are left: those declared before are not ours
        self.next_at = 0.0  # new schedules get their row and first tick now

    def schedule(self, r: Round) -> None:
        self.next_at = r.now + policy.seconds_to_next_tick(
            self.schedules, datetime.now(UTC), CRON_WAKE_AT_LEAST_EVERY
        )

    def run_once(self, conn: Conn, r: Round) -> None:
        if not self.declared:
            schedule_store.declare(conn, r.config, self.schedules, r.server_id)
            self.declared = True
        now = datetime.now(UTC)
        fired = scheduler.fire_due(conn, r.config, self.schedules, now, r.config.wake_channel)
        r.chores.new_work |= bool(fired)
