"""The housekeeper: runs the maintenance services (:mod:`qsup.supervisor.maintenance`) that are
due, each on the supervisor's connection, and gathers what they found for the arbiter; owns the
pruner (:mod:`qsup.supervisor.retention`), which works in a thread on a connection of its own."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

from qsup import scheduler
from qsup.settings import Config
from qsup.supervisor.link import Link
from qsup.supervisor.liveness import LockWatch
from qsup.supervisor.maintenance import Chores, Cron, Heartbeat, Rescuer, Round, Service
from qsup.supervisor.retention import Pruner
from qsup.supervisor.watchdog import StrandedWatch

SHOW_WITHIN = 1.0  # seconds: a change of the server's row (workers, totals) is written this soon


class Housekeeper:
    def __init__(
        self,
        link: Link,
        counters: Counter[str],
        schedules: Sequence[scheduler.Schedule],
        pruner: Pruner,
    ) -> None:
        self.link = link
        self.counters = counters
        rescuer = Rescuer()
        self.heartbeat = Heartbeat(counters, rescuer)
        self.cron = Cron(schedules)
        # the heartbeat and the rescuer also run while draining: the row stays fresh
        self.always: tuple[Service, ...] = (self.heartbeat, LockWatch(rescuer), rescuer)
        self.running_only: tuple[Service, ...] = (self.cron, StrandedWatch())
        self.pruner = pruner  # started by the first round while running
        self.shown: tuple[int, int, int] | None = None  # (max, workers, tasks) of the last beat

    def reload(self, schedules: Sequence[scheduler.Schedule], result_ttl: float) -> None:
        self.cron.reload(schedules)
        self.pruner.ttl = result_ttl

    def deadlines(self, running: bool) -> list[float]:
        return [s.deadline() for s in self.always + (self.running_only if running else ())]

    def run(
        self,
        now: float,
        config: Config,
        server_id: int,
        workers: tuple[int, int, int],
        running: bool,
    ) -> Chores:
        """``workers`` is (max, busy, idle). Only what is due runs, in order: the heartbeat
        first (it may find tasks to rescue)."""
        if running:
            self.pruner.start()
        shown = (workers[0], workers[1] + workers[2], self.counters.total())
        if shown != self.shown:  # beat early, once for every change within SHOW_WITHIN
            self.heartbeat.beat_by(now + SHOW_WITHIN)
        r = Round(now, config, server_id, workers, self.link.connected_for())
        for service in self.always + (self.running_only if running else ()):
            if now < service.deadline():
                continue
            if service is self.heartbeat:
                self.shown = shown
            service.schedule(r)  # before the call: a database away must not make a busy loop
            self.link.call(functools.partial(service.run_once, r=r))
        return r.chores

    def close(self) -> None:
        self.pruner.close()

    def beat_now(self) -> None:
        """Beat at the next pass (an operator asked to cancel a task: see who holds it)."""
        self.heartbeat.beat_by(0.0)
