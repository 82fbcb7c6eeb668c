"""Liveness by advisory lock: dead servers are rescued in seconds, not after the heartbeat
timeout, and a server that lost its lock stops its tasks before another can run them.

Each server holds the session advisory lock (``LIVENESS_CLASS``, its id) on its supervisor
connection from registration on (``register_server``). The lock ends with the session: when the
process dies, or its host vanishes (the session's keepalives end it in seconds). The other
servers look for running servers whose lock is free every ``CHECK_EVERY`` seconds
(:class:`LockWatch`), and declare dead the ones still free ``CONFIRM_AFTER`` later; the rescuer
then requeues their tasks. The server itself (:class:`OwnLock`) notices its connection dropped
at once, and unless it takes its lock back first it stops its running tasks ``FENCE_AFTER``
seconds later, before any other server could declare it dead: a fencing token, as in Chubby's
sequencers or a lease. Compare Oban's Lifeline and River's rescuer, which wait for a timeout.
"""

from __future__ import annotations

import os
import selectors
import time
from typing import Any

import psycopg
from loguru import logger

from qsup import log, repo
from qsup.sql import queries
from qsup.supervisor import policy
from qsup.supervisor.crew import Crew
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.link import Link
from qsup.supervisor.maintenance import Rescuer, Round
from qsup.supervisor.pool import kill

Q = queries()
CHECK_EVERY = 5.0  # seconds between looks at the other servers' locks (one cheap statement)
CONFIRM_AFTER = 3.5  # a free lock is still free this much later: its server is dead
FENCE_AFTER = 2.5  # seconds without our lock before our tasks stop: under CONFIRM_AFTER
RETAKE_EVERY = 0.25  # seconds between attempts to take our lock back


class OwnLock:
    """This server's liveness lock: whether it is held (its connection is watched in the
    arbiter's selector), and since when it has not been. It is held on the arbiter's link, or,
    when ``direct_url`` is set (the link goes through a transaction pooler, whose server
    sessions outlive ours), on a connection of its own to that URL."""

    def __init__(
        self,
        link: Link,
        selector: selectors.BaseSelector,
        ledger: Ledger,
        crew: Crew,
        direct_url: str | None = None,
    ):
        self.separate = direct_url is not None
        if direct_url is not None:
            link = Link(direct_url, f"qsup-liveness-{os.getpid()}")
            link.on_reconnect = self.watch
        self.link, self.selector, self.ledger, self.crew = link, selector, ledger, crew
        link.on_lost = self._lost
        self.lost_at: float | None = None  # monotonic time our connection was seen dropped
        self.fenced = False  # our tasks were stopped since
        self.retake_at = 0.0
        self.fd: int | None = None  # the watched socket

    def start(self) -> None:
        """Once registered: watch the lock ``register_server`` took, or take it on our own
        connection (the arbiter claims nothing until it is held)."""
        if not self.separate:
            self.watch()
            return
        self.link.open()
        self.watch()
        self.lost_at = self.retake_at = time.monotonic()

    def reconnected(self, link: Link) -> None:
        """The arbiter's link is back: watch it, if the lock lives there."""
        if link is self.link:
            self.watch()

    def close(self) -> None:
        if self.separate:
            self.link.close()

    def watch(self) -> None:
        """Wake the arbiter when the server ends our session (on each new connection)."""
        assert self.link.conn is not None
        self.fd = self.link.conn.fileno()
        self.selector.register(self.fd, selectors.EVENT_READ, "link")

    def _lost(self) -> None:
        if self.fd is not None:  # a broken connection no longer tells its socket
            self.selector.unregister(self.fd)
            self.fd = None
        if self.lost_at is None:
            self.lost_at, self.fenced = time.monotonic(), False
            self.retake_at = self.lost_at

    def deadlines(self) -> list[float]:
        if self.lost_at is None:
            return []
        return [self.retake_at] + ([] if self.fenced else [self.lost_at + FENCE_AFTER])

    def mind(self, now: float, server_id: int) -> None:
        """While lost: take the lock back; stop our tasks (fence) when we were declared dead
        or have been without it too long. The arbiter claims nothing until it is held."""
        if self.lost_at is None:
            return
        running = None
        if now >= self.retake_at:
            self.retake_at = now + RETAKE_EVERY
            running = self.link.call(lambda conn: self._retake(conn, server_id, now))
        lost_for = None if self.lost_at is None else now - self.lost_at
        if not self.fenced and policy.must_fence(lost_for, running is False, FENCE_AFTER):
            self.fenced = True
            fence(self.ledger, self.crew, now, running is False)

    def _retake(self, conn: psycopg.Connection[Any], server_id: int, now: float) -> bool | None:
        """None while another session holds the lock (we keep trying), else whether our row
        is still marked running (False: we were declared dead)."""
        params = {"lock_class": repo.LIVENESS_CLASS, "server_id": server_id}
        row = conn.execute(Q["take_liveness_lock"], params).fetchone()
        if not row or not row[0]:
            return None
        running = conn.execute(Q["server_is_running"], params).fetchone()
        lost_for = now - (self.lost_at or now)
        logger.info("took this server's liveness lock back after {:.1f} s", lost_for)
        self.lost_at = None
        return bool(running and running[0])


class LockWatch:
    """Declare dead the running servers whose liveness lock stays free; wake the rescuer."""

    def __init__(self, rescuer: Rescuer) -> None:
        self.rescuer = rescuer
        self.next_at = 0.0
        self.suspects: list[int] = []

    def deadline(self) -> float:
        return self.next_at

    def schedule(self, r: Round) -> None:
        self.next_at = r.now + CHECK_EVERY

    def run_once(self, conn: psycopg.Connection[Any], r: Round) -> None:
        params: dict[str, Any] = {"lock_class": repo.LIVENESS_CLASS, "server_id": r.server_id}
        if not self.suspects:
            row = conn.execute(Q["lock_free_servers"], params).fetchone()
            self.suspects = list(row[0]) if row else []
            if self.suspects:
                self.next_at = r.now + CONFIRM_AFTER
            return
        params["ids"], self.suspects = self.suspects, []
        dead = conn.execute(Q["declare_lock_free_dead"], params).fetchall()
        for _, name in dead:
            log.event("server_dead").warning(
                "server {} lost its liveness lock (its process or host died): marked dead", name
            )
        if dead:
            self.rescuer.pending = True


def fence(ledger: Ledger, crew: Crew, now: float, declared_dead: bool) -> None:
    """Stop every task this server holds: another server may run them now. Declared dead,
    we hold none of them any more: another server took them back (and charged those the
    database saw start, see ``rescue_orphans``), so nothing of them is written; a write keyed
    by task and server would hit our own claim of the same task after the rescue (claims
    resume at once, before the killed workers are reaped). Else what never started goes back
    to the queue and each running task is a failed attempt (written where we still hold
    them: while our lock was lost we claimed nothing)."""
    busy = [w for w in crew.workers.values() if crew.busy(w) and w.kill_reason is None]
    if declared_dead:
        ledger.forget_buffer()
    if not busy and not ledger.buffer and not ledger.ahead:
        return
    log.event("fenced").warning(
        "this server {}: stopping its {} running task(s) so that no other server runs them"
        " twice; {}",
        "was declared dead" if declared_dead else f"lost its liveness lock {FENCE_AFTER:g} s ago",
        len(busy),
        "the server that declared it dead took them back"
        if declared_dead
        else "each is a failed attempt, what it held unstarted goes back",
    )
    ledger.release_buffer(now)
    for worker in busy:
        kill(worker, "rescued" if declared_dead else "fenced")
