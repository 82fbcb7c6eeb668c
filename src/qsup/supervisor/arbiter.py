"""The arbiter: the supervisor's single loop.

One ``selectors`` loop waits on the signal pipe, the LISTEN socket and every worker pipe, with
a timeout that is the nearest deadline (flush, poll, heartbeat, task timeouts, shutdown).
Each pass: handle signals, read worker messages, reap, enforce deadlines, heartbeat and the
other chores, manage workers, claim, hand tasks to idle workers, flush writes. The arbiter
drives the flow of tasks; what the server holds is its
:class:`~qsup.supervisor.ledger.Ledger`'s, what becomes of an ended task is decided in
:mod:`~qsup.supervisor.settle`, and the worker processes themselves (spawning, scaling,
recycling, killing, reaping) belong to its :class:`~qsup.supervisor.crew.Crew`, which hands
each dead worker back so the arbiter settles the tasks it held. The policies in
:mod:`qsup.supervisor.policy` make the decisions.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import select
import selectors
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from loguru import logger
from setproctitle import setproctitle

from qsup import protocol, repo
from qsup.db.connect import prepare_threshold
from qsup.errors import ConfigError
from qsup.linux import become_subreaper
from qsup.scheduler import Schedule, load_schedules
from qsup.settings import Config
from qsup.supervisor import handoff, policy, settle
from qsup.supervisor.crew import Crew
from qsup.supervisor.housekeeping import Housekeeper
from qsup.supervisor.intake import Intake
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.link import Link
from qsup.supervisor.liveness import OwnLock, fence
from qsup.supervisor.pool import Worker
from qsup.supervisor.retention import Pruner
from qsup.supervisor.signals import SignalPipe
from qsup.supervisor.watchdog import PassWatch
from qsup.supervisor.writer import SHUTDOWN_WAIT, Writer

if TYPE_CHECKING:
    from qsup.http.process import HttpKeeper

FLUSH_SIZE = 500  # outcomes that are worth a flush at once
RETRY_FLUSH_AFTER = 0.25  # seconds between flush attempts while the database is away


class Arbiter:
    """Claims tasks, runs them in worker processes, writes what happened."""

    def __init__(
        self,
        config: Config,
        url: str,
        reload: Callable[[], Config],
        schedules: Sequence[Schedule] = (),
        http: HttpKeeper | None = None,
    ) -> None:
        self.config = config
        self.url = url
        self.reload = reload
        self.counters: Counter[str] = Counter()  # running totals, see housekeeping
        self.ledger = Ledger(self.counters)
        prepare = prepare_threshold(config, at_once=True)
        self.link = Link(url, f"qsup-supervisor-{os.getpid()}", prepare)
        self.selector = selectors.DefaultSelector()
        self.intake = Intake(config, url, self.link, self.selector)
        self.writer = Writer(url, f"qsup-writer-{os.getpid()}", prepare)
        self.selector.register(self.writer.wake_fd, selectors.EVENT_READ, "written")
        self.crew = Crew(config, self.selector, self.writer.busy, self.counters, self.ledger)
        self.own_lock = OwnLock(
            self.link, self.selector, self.ledger, self.crew, config.listen_database_url
        )
        self.http = http  # restarted when it dies
        self.crew.on_other_exit = http.exited if http else None
        pruner = Pruner(url, f"qsup-pruner-{os.getpid()}", config.result_ttl)
        self.housekeeper = Housekeeper(self.link, self.counters, schedules, pruner)
        self.link.on_reconnect = self._on_reconnect
        self.reconcile_due = False
        self.server_id = 0
        self.hostname = socket.gethostname()
        self.state = "running"  # then "draining", then "stopping"
        self.next_flush_at = 0.0  # after a failed flush (database away), not before
        self.avg_task_seconds: float | None = None  # sizes the hand-off batches
        self.drain_deadline: float | None = None
        self.signals: SignalPipe | None = None
        self.watch = PassWatch(lambda: self.config.stranded_after, self.link, self.writer.busy)

    # --- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        setproctitle("qsup: supervisor")
        become_subreaper()
        # `kill -USR2` prints every thread's stack to the log, from a C handler: it works while
        # the loop is stuck (workers forked later inherit it)
        faulthandler.register(signal.SIGUSR2, all_threads=True)
        self.link.open()
        assert self.link.conn is not None
        self.server_id = repo.register_server(
            self.link.conn,
            f"{self.hostname}:{os.getpid()}",
            self.crew.max_workers,
            self.hostname,
            os.getpid(),
            self.config.queues,
            take_lock=not self.own_lock.separate,
        )
        # What start-up made (modules, settings, task code) lives as long as the process:
        # out of every collection (a full one took 17 ms mid-drain) and out of the pages
        # the collector would otherwise copy in each forked worker.
        gc.freeze()
        self.own_lock.start()
        self.signals = SignalPipe()
        self.selector.register(self.signals.read_fd, selectors.EVENT_READ, "signals")
        self.intake.listen()
        self.watch.start()
        logger.info(
            "supervisor {} started (server id {}, workers {}..{}, queues {})",
            os.getpid(),
            self.server_id,
            self.config.min_workers,
            self.crew.max_workers,
            ",".join(self.config.queues) or "all",
        )
        try:
            while not self._finished():
                try:
                    self._pass()
                except Exception:  # a bug here must not orphan the tasks we hold
                    logger.exception("internal error in the supervisor loop; continuing")
                    time.sleep(0.1)
        finally:
            self._close()
        return 0

    def _pass(self) -> None:
        self.watch.busy = False  # waiting is no stall
        events = self.selector.select(self._timeout())
        self.watch.started, self.watch.busy = time.monotonic(), True
        for key, _ in events:
            if key.data == "signals":
                self._handle_signals()
            elif key.data == "listen":
                self.intake.on_readable()
            elif key.data == "written":
                self._written()
            elif key.data == "link":
                self.link.check()
            else:
                self._read_worker(key.data)
        now = time.monotonic()
        self._reap()
        self.crew.enforce_deadlines(now, self.drain_deadline)
        self.own_lock.mind(now, self.server_id)
        self._chores(now)  # before claiming: what it finds (rescued, due tasks) goes out now
        if self.http and self.state == "running":
            self.http.restart_if_due(now, self.writer.busy)
        if self.state == "running":
            # the tasks we hold, else one if the last claim left more in the database
            self.crew.scale(now, len(self.ledger.buffer) or int(self.intake.backlog))
        how = policy.handoff(self.avg_task_seconds)
        handoff.dispatch(self.ledger, self.crew, how)  # refill from what we hold, first
        self._claim(now, how)
        handoff.dispatch(self.ledger, self.crew, how)
        if self.state == "running":
            handoff.recall(self.ledger, self.crew)
        self.intake.check_next_due(now)
        self._flush(now)

    def _finished(self) -> bool:
        return self.state != "running" and not self.crew.workers

    def _timeout(self) -> float:
        now = time.monotonic()
        running = self.state == "running"
        deadlines = self.housekeeper.deadlines(running)
        if running:
            deadlines.extend(self.intake.deadlines())
        flush_at = self.ledger.outbox.due_at(now)
        if flush_at is not None and self.ledger.writing is None:
            deadlines.append(max(flush_at, self.next_flush_at))
        if self.drain_deadline is not None:
            deadlines.append(self.drain_deadline)
        deadlines.extend(self.crew.deadlines(now, running))
        deadlines.extend(self.own_lock.deadlines())
        deadlines.extend(self.http.deadlines() if self.http else ())
        return max(0.0, min(deadlines) - now)

    def _close(self) -> None:
        self.watch.busy = False  # the waits of a shutdown are no stall
        self.ledger.release_buffer(time.monotonic())
        give_up = time.monotonic() + SHUTDOWN_WAIT
        while self.ledger.writing is not None and time.monotonic() < give_up:  # let it end
            select.select([self.writer.wake_fd], [], [], 1.0)
            self._written()
        outbox = self.ledger.outbox
        for _ in range(3):  # the database may be restarting: try a few times, then give up
            if not len(outbox) or self.writer.flush_now(
                outbox, self.server_id, self.config.wake_channel
            ):
                break
            time.sleep(1)
        if len(outbox):
            logger.error(
                "could not write {} pending updates; tasks held by this server will"
                " be rescued by the next one",
                len(outbox),
            )
        self.link.call(lambda conn: repo.stop_server(conn, self.server_id), now=True)
        self.link.close()
        self.housekeeper.close()
        self.own_lock.close()
        self.writer.close()
        self.intake.close()
        if self.signals:
            self.signals.close()
        logger.info("supervisor {} stopped", os.getpid())

    # --- signals --------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        assert self.signals is not None
        for sig in self.signals.drain():
            if sig in (signal.SIGTERM, signal.SIGINT) and self.state == "running":
                self._start_drain(sig)
            elif sig in (signal.SIGINT, signal.SIGQUIT) and self.state == "draining":
                self._stop_now()
            elif sig == signal.SIGQUIT:
                self._stop_now()
            elif sig == signal.SIGHUP and self.state == "running":
                self._reload()
            elif sig in (signal.SIGTTIN, signal.SIGTTOU):
                self.crew.resize(1 if sig == signal.SIGTTIN else -1)
                logger.info("{}: max workers now {}", sig.name, self.crew.max_workers)

    def _start_drain(self, sig: signal.Signals) -> None:
        self.state = "draining"
        self.drain_deadline = time.monotonic() + self.config.shutdown_timeout
        logger.info(
            "{}: draining (running tasks get {:g} s to finish)",
            sig.name,
            self.config.shutdown_timeout,
        )
        self.ledger.release_buffer(time.monotonic())
        self.crew.retire_all("shutdown")

    def _stop_now(self) -> None:
        logger.warning("stopping now: running tasks are requeued")
        self.state = "stopping"
        self.crew.kill_all("shutdown")

    def _reload(self) -> None:
        try:  # checked like a start: on any error the running configuration stays
            config = self.reload()
            schedules = load_schedules(config)
        except ConfigError as exc:
            logger.error("SIGHUP: configuration not reloaded: {}", exc)
            return
        self.config = config
        self.housekeeper.reload(schedules, config.result_ttl)
        self.intake.reconfigure(self.config, self.url)
        logger.info("SIGHUP: configuration reloaded; replacing workers")
        self.crew.reload(self.config)

    # --- worker messages, dead workers' tasks ---------------------------------------------

    def _read_worker(self, worker: Worker) -> None:
        now = time.monotonic()
        try:
            while worker.waiting():
                self._on_message(worker, protocol.decode(worker.conn.recv_bytes()), now)
        except (EOFError, OSError):
            self.crew.close_pipe(worker)

    def _on_message(self, worker: Worker, msg: Any, now: float) -> None:
        if isinstance(msg, protocol.Started):
            self._started(worker, msg.task_id, msg.at, now)
        elif isinstance(msg, protocol.Results):
            self._on_results(worker, msg.finished, now)
        elif isinstance(msg, protocol.Released):
            if self.ledger.current(worker.pid) in msg.task_ids:
                worker.deadline = None
            given_back = self.ledger.released(worker.pid, msg.task_ids)
            self.ledger.give_back(given_back, self.state == "running", now)
        elif isinstance(msg, protocol.Log):
            self.ledger.outbox.log(msg.task_id, msg.type, msg.message, now, msg.at)
        elif isinstance(msg, protocol.Progress | protocol.Inspected):
            self.ledger.outbox.reported(msg, now)
        elif isinstance(msg, protocol.SaveContext):
            self.ledger.outbox.save_context(msg.task_id, msg.context, now)
        elif isinstance(msg, protocol.Enqueue):
            self.ledger.outbox.enqueue(msg.task, now)
        elif isinstance(msg, protocol.Ready):
            self.crew.on_ready(worker, now)
        else:
            logger.warning("worker {} sent an unknown message: {!r}; ignored", worker.pid, msg)

    def _on_results(
        self, worker: Worker, results: tuple[protocol.Finished, ...], now: float
    ) -> None:
        """Jobs that ended, in order; after the last one the worker went straight on to its
        next job, if it holds one."""
        outbox = self.ledger.outbox
        for msg in results:
            task, cancelled = self.ledger.finish(worker.pid, msg.task_id)
            if cancelled:  # it ran before the worker read our Drop
                logger.info("task {} finished before its cancellation reached the worker", task.id)
            ran = msg.done - msg.started
            self.avg_task_seconds = policy.moving_average(self.avg_task_seconds, ran)
            settle.finished(outbox, task, msg, worker.pid, self.config, now)
            self.intake.gate.hand_on(task.id, ran, self.ledger, now)
        last = results[-1]
        worker.deadline, worker.rss = None, last.rss
        worker.tasks_done += len(results)
        following = self.ledger.next_job(worker.pid)
        if following is not None:
            self._started(worker, following, last.done, now)
        else:
            worker.idle_since = now
        self.crew.maybe_recycle(worker)

    def _started(self, worker: Worker, task_id: Any, at: float, now: float) -> None:
        task = self.ledger.start(worker.pid, task_id, at)
        worker.deadline = now + task.timeout + self.config.timeout_grace
        self.ledger.outbox.started(task_id, at, worker.pid)

    def _reap(self) -> None:
        for worker, how in self.crew.reap(last_words=self._read_worker):
            keep = self.state == "running"
            settle.dead_worker(self.ledger, worker, how, keep, self.config, time.monotonic())

    # --- claiming and dispatch ------------------------------------------------------------

    def _on_reconnect(self) -> None:
        self.intake.wake()  # catch up on what NOTIFY said while we were away
        self.reconcile_due = True
        self.own_lock.reconnected(self.link)

    def _claim(self, now: float, how: policy.Handoff) -> None:
        if self.state != "running" or self.own_lock.lost_at is not None:
            return
        if self.reconcile_due:
            self.reconcile_due = not self.intake.reconcile(self.server_id, self.ledger.ids())
        in_flight = [self.ledger.load(w.pid) for w in self.crew.workers.values() if w.accepting]
        limit = policy.claim_size(
            in_flight,
            self.crew.spare,
            len(self.ledger.buffer),
            self.config.claim_batch_size,
            how,
        )
        room = policy.room_in_workers(in_flight, self.crew.spare)  # for limited queues
        self.counters["claimed"] += self.intake.claim(now, self.server_id, limit, room, self.ledger)

    # --- writes and heartbeat -------------------------------------------------------------

    def _flush(self, now: float) -> None:
        """Hand the outbox to the writer when it is due and the writer is free (the starts of
        tasks that only just began stay behind). With every worker idle and nothing held, no
        result can join the batch: it is due at once."""
        outbox = self.ledger.outbox
        flush_at = outbox.due_at(now)
        if flush_at is None or self.ledger.writing is not None or now < self.next_flush_at:
            return
        outcomes = len(outbox) - len(outbox.running)
        quiet = not self.ledger.buffer and not any(map(self.crew.busy, self.crew.workers.values()))
        if now < flush_at and outcomes < FLUSH_SIZE and not (quiet and outcomes):
            return
        batch = self.ledger.take_for_writing()
        if batch is not None:
            self.writer.submit(batch, self.server_id, self.config.wake_channel)

    def _written(self) -> None:
        """The writer finished; entries it could not write (database away) come back first."""
        done = self.writer.collect()
        if done is None:
            return
        batch, ok = done
        self.ledger.written(batch, ok)
        if not ok:
            self.next_flush_at = time.monotonic() + RETRY_FLUSH_AFTER
        elif batch.released:  # dependents it made due: claim them now, not on the NOTIFY
            self.intake.wake()

    def _chores(self, now: float) -> None:
        if self.intake.operator_hint:  # a running task to cancel or inspect: look now
            self.intake.operator_hint = False
            self.housekeeper.beat_now()
        busy = sum(map(self.crew.busy, self.crew.workers.values()))
        chores = self.housekeeper.run(
            now,
            self.config,
            self.server_id,
            (self.crew.max_workers, busy, len(self.crew.workers) - busy),
            self.state == "running",
        )
        if chores.new_work:
            self.intake.wake()
        if chores.declared_dead:  # our tasks were rescued: they are not ours any more
            fence(self.ledger, self.crew, now, declared_dead=True)
        if chores.cancel:
            handoff.cancel(self.ledger, self.crew, chores.cancel, now)
        if chores.stalled:
            self.intake.restart()
        if chores.inspect:
            handoff.inspect(self.ledger, self.crew, chores.inspect, now)
