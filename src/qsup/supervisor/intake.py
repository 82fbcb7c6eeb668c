"""Where tasks come from: NOTIFY wake-ups, polls, and the batched claim."""

from __future__ import annotations

import math
import selectors
import time

import psycopg
from loguru import logger

from qsup import log, repo
from qsup.errors import DatabaseUnreachable
from qsup.flow_store import FLOW_PAYLOAD
from qsup.settings import Config
from qsup.supervisor.flow import Gate
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.link import Link
from qsup.supervisor.listener import Listener

MIN_POLL = 0.01  # floor between polls when due tasks are locked by another server's claim
LISTEN_RETRY = 1.0  # seconds between attempts to LISTEN again


class Intake:
    """Knows when to claim (``backlog``: NOTIFY came, the last batch was full, or a poll is
    due) and claims. NOTIFY is only a hint: with it off, polling keeps everything correct."""

    def __init__(
        self, config: Config, url: str, link: Link, selector: selectors.BaseSelector
    ) -> None:
        self.config = config
        self.link = link
        self.selector = selector
        self.listener = Listener(config.listen_database_url or url, config.notify_channel)
        self.listen_fd: int | None = None
        self.backlog = True
        self.due_check = False  # the last claim was not full: look for delayed tasks
        self.operator_hint = False  # an operator asked to cancel or inspect a running task
        self.next_poll = 0.0
        self.next_listen_at = 0.0
        self.gate = Gate(config)  # paused and limited queues

    @property
    def notify(self) -> bool:
        return self.config.use_postgresql_notify

    def wake(self) -> None:
        self.backlog = True
        self.gate.wake()

    def deadlines(self) -> list[float]:
        due = [self.next_poll]
        if self.backlog and not self.link.up:  # claim again as soon as the link may be back
            due.append(self.link.retry_at)
        if self.notify and self.listen_fd is None:
            due.append(self.next_listen_at)
        return due + self.gate.deadlines(time.monotonic())

    def reconfigure(self, config: Config, url: str) -> None:
        """SIGHUP: take the new settings; LISTEN again when what we listen to changed."""
        listen_url = config.listen_database_url or url
        changed = (config.notify_channel, listen_url, config.use_postgresql_notify) != (
            self.listener.channel,
            self.listener.url,
            self.notify,
        )
        self.config = config
        self.gate.reconfigure(config)
        if changed:
            self.close()
            self.listener = Listener(listen_url, config.notify_channel)
            self.listen()  # also when the database is away: it retries at the next claim
        self.backlog = True  # the queues taken may have changed too

    def restart(self) -> None:
        """Claims made no progress while work of our queues is due: LISTEN on a new
        connection, read the pauses and limits again, and claim at once."""
        log.event("claim_stalled").warning(
            "this server has idle workers, yet tasks of its queues have been due for more than"
            " {:g} s: listening again and claiming afresh",
            self.config.stranded_after,
        )
        self.close()
        self.listen()
        self.gate.changed()
        self.wake()
        self.next_poll = 0.0

    def listen(self) -> None:
        if not self.notify:
            return
        try:
            fd = self.listener.open()
        except DatabaseUnreachable:
            self.next_listen_at = time.monotonic() + LISTEN_RETRY
            return
        self.selector.register(fd, selectors.EVENT_READ, "listen")
        self.listen_fd = fd
        self.backlog = True  # catch up on what was missed while not listening

    def on_readable(self) -> None:
        try:
            payloads = self.listener.drain()
            for payload in payloads:
                if payload in (repo.CANCEL_PAYLOAD, repo.INSPECT_PAYLOAD):
                    self.operator_hint = True
                elif payload == FLOW_PAYLOAD:
                    self.gate.changed()  # read at the next pass, which may claim more
                    self.backlog = True
                else:
                    self.backlog = True
                    self.gate.wake(payload)
        except psycopg.OperationalError:
            logger.warning("lost the LISTEN connection; reconnecting")
            self.close()
            self.next_listen_at = time.monotonic() + LISTEN_RETRY

    def close(self) -> None:
        if self.listen_fd is not None:
            self.selector.unregister(self.listen_fd)
            self.listen_fd = None
        self.listener.close()

    def claim(self, now: float, server_id: int, limit: int, room: int, ledger: Ledger) -> int:
        """If it is time to, claim up to ``room`` tasks of limited queues (they go first) and
        up to ``limit`` of the others into the ledger's buffer; returns how many."""
        if self.notify and self.listen_fd is None and now >= self.next_listen_at:
            self.listen()
        gate, time_to = self.gate, self.backlog or now >= self.next_poll
        if (time_to or ledger.buffer or gate.due(now)) and gate.refresh(
            self.link, now, ledger, server_id
        ):
            self.backlog = time_to = True  # a queue was resumed, or lost its limits
        plain = limit > 0 and time_to
        count = gate.claim(self.link, now, server_id, room, ledger)
        if not plain:
            return count
        queues, skip = self.config.queues, gate.skip
        timeout = self.config.task_timeout
        claimed = self.link.call(
            lambda conn: repo.claim_batch(conn, server_id, queues, limit, timeout, skip)
        )
        if claimed is None:
            return count  # database away: the link retries with backoff
        ledger.claimed(claimed)
        self.backlog = len(claimed) >= limit
        if log.debug_events:
            for job in claimed:
                log.event("claimed", job.id).debug("task {} claimed", job.name)
        # With NOTIFY the heartbeat checks for due tasks (one query per beat when idle).
        self.next_poll = now + (math.inf if self.notify else self.config.polling_interval)
        self.due_check = not self.backlog
        return count + len(claimed)

    def reconcile(self, server_id: int, known: set[str]) -> bool:
        """After a lost connection: a claim whose reply never arrived may have committed. Give
        back the tasks the database says this server holds that are not ``known``; False
        while the database is away (try again later)."""
        given_back = self.link.call(lambda conn: repo.release_unknown(conn, server_id, [*known]))
        if given_back:
            logger.warning("requeued {} task(s) of a claim whose reply was lost", len(given_back))
        return given_back is not None

    def check_next_due(self, now: float) -> None:
        """After a claim that emptied the queue (and after its tasks went out: this costs a
        round trip), wake when the next delayed task is due; soon if one already is."""
        if not self.due_check:
            return
        self.due_check = False
        queues, skip = self.config.queues, self.gate.skip
        due = self.link.call(lambda conn: repo.next_due_in(conn, queues, skip))
        if due is not None:
            self.next_poll = min(self.next_poll, now + max(MIN_POLL, due))
