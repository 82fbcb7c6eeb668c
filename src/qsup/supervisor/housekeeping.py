"""The supervisor's periodic chores: heartbeat, rescue of dead servers' tasks, operators'
cancel requests, pruning of old results, cron ticks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loguru import logger

from qsup import repo, scheduler
from qsup.protocol import TaskId
from qsup.settings import Config
from qsup.supervisor import policy
from qsup.supervisor.link import Link

PRUNE_EVERY = 600.0  # seconds between prunes of finished tasks (results live for days)
SHOW_WITHIN = 1.0  # seconds: a change of the server's row (workers, totals) is written this soon
SCHEDULE_EVERY = 0.5  # seconds between checks for due cron ticks (ticks are whole seconds)


@dataclass
class Chores:
    """What the arbiter must act on after a round of chores."""

    cancel: set[TaskId] = field(default_factory=set)
    new_work: bool = False
    declared_dead: bool = False


class Housekeeper:
    def __init__(
        self, link: Link, counters: Counter[str], schedules: Sequence[scheduler.Schedule]
    ) -> None:
        self.link = link
        self.schedules = schedules  # validated at start and at each reload
        self.counters = counters  # the server's running totals, written by each heartbeat
        self.next_heartbeat = 0.0
        self.next_prune = 0.0
        self.next_schedule_check = 0.0
        self.shown: tuple[int, int, int] | None = None  # (max, workers, tasks) of the last beat

    def deadlines(self, config: Config, running: bool) -> list[float]:
        due = [self.next_heartbeat]
        if running and self.schedules:
            due.append(self.next_schedule_check)
        return due

    def run(
        self,
        now: float,
        config: Config,
        server_id: int,
        workers: tuple[int, int, int],
        running: bool,
    ) -> Chores:
        """``workers`` is (max, busy, idle). Only what is due runs."""
        chores = Chores()
        shown = (workers[0], workers[1] + workers[2], self.counters.total())
        if shown != self.shown:  # beat early, once for every change within SHOW_WITHIN
            self.next_heartbeat = min(self.next_heartbeat, now + SHOW_WITHIN)
        if now >= self.next_heartbeat:
            self.shown = shown
            self.next_heartbeat = now + policy.beat_interval(
                config.use_postgresql_notify,
                config.heartbeat_interval,
                config.fallback_polling_interval,
            )
            self._beat(config, server_id, workers, chores)
            if running and now >= self.next_prune:
                self.next_prune = now + PRUNE_EVERY
                self._prune(config)
        if running and self.schedules and now >= self.next_schedule_check:
            self.next_schedule_check = now + SCHEDULE_EVERY
            fired = self.link.call(
                lambda conn: scheduler.fire_due(
                    conn, config, self.schedules, datetime.now(UTC), config.wake_channel
                )
            )
            chores.new_work |= bool(fired)
        return chores

    def beat_now(self) -> None:
        """Beat at the next pass (an operator asked to cancel a task: see who holds it)."""
        self.next_heartbeat = 0.0

    def _beat(
        self, config: Config, server_id: int, workers: tuple[int, int, int], chores: Chores
    ) -> None:
        # Just (re)connected: others' beats may be stale because the database was away.
        may_declare = self.link.connected_for() >= config.server_timeout
        beat = self.link.call(
            lambda conn: repo.heartbeat(
                conn,
                server_id,
                workers,
                self.counters,
                config.queues,
                config.server_timeout,
                may_declare,
            )
        )
        if beat is None:
            return
        if not beat.was_running:
            logger.warning(
                "this server had been declared dead by another (its tasks were"
                " rescued); it is running again"
            )
            chores.declared_dead = True
        for name in beat.declared_dead:
            logger.warning("server {} missed its heartbeats: marked dead", name)
        if beat.orphans:
            self._rescue(chores)
        chores.cancel.update(beat.cancel)
        chores.new_work |= beat.due

    def _rescue(self, chores: Chores) -> None:
        rescued = self.link.call(repo.rescue_orphans) or []
        if rescued:
            logger.warning("rescued {} task(s) from dead servers", len(rescued))
            chores.new_work = True
        failed = [task_id for task_id, state, _, _ in rescued if state == "failed"]
        if failed:  # no attempt left: their dependents will never run
            self.link.call(lambda conn: repo.cancel_dependents(conn, failed))

    def _prune(self, config: Config) -> None:
        pruned = self.link.call(lambda conn: repo.prune_finished(conn, config.result_ttl))
        if pruned:
            logger.info("pruned {} finished task(s) older than {:g} s", pruned, config.result_ttl)
