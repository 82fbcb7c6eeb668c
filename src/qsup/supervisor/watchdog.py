"""Work no server runs must be loud (SPEC §18): tasks due too long in a queue no live server
serves, or waiting while a server that serves them has idle workers (a stalled server).

:class:`StrandedWatch` is a maintenance service: every ``stranded_after / 4`` seconds (0.5 to
15) one statement looks for both; the live server with the smallest id logs what it finds at
WARNING (events ``stranded`` and ``stalled``) when the set of queues or servers changes, and a
server that finds itself stalled tells the arbiter, which reconnects (event ``claim_stalled``).
:class:`PassWatch` is a thread for the case no statement can see: a pass of the arbiter stuck
longer than ``stranded_after`` (a statement on a connection that hangs) has its statement
cancelled, so the connection is reopened like after an outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from qsup import log, probes
from qsup.supervisor.link import Link
from qsup.supervisor.maintenance import Round

MIN_EVERY, MAX_EVERY = 0.5, 15.0  # seconds between looks, whatever stranded_after is


class StrandedWatch:
    def __init__(self) -> None:
        self.next_at = 0.0
        self.shown: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self.restart_after = 0.0  # we found ourselves stalled: once per stranded_after

    def deadline(self) -> float:
        return self.next_at

    def schedule(self, r: Round) -> None:
        self.next_at = r.now + min(max(r.config.stranded_after / 4, MIN_EVERY), MAX_EVERY)

    def run_once(self, conn: psycopg.Connection[Any], r: Round) -> None:
        after = r.config.stranded_after
        found = probes.stranded_work(conn, after, r.config.server_timeout)
        if r.server_id in found.stalled.values() and r.now >= self.restart_after:
            r.chores.stalled = True
            self.restart_after = r.now + after
        shown = (frozenset(found.queues), frozenset(found.stalled))
        if found.reporter != r.server_id or shown == self.shown:
            return
        self.shown = shown
        for queue, n in found.queues.items():
            log.event("stranded").warning(
                "{} task(s) of queue {} have been due for more than {:g} s and no live server"
                " serves that queue (see --queues)",
                n,
                queue,
                after,
            )
        for server in found.stalled:
            log.event("stalled").warning(
                "server {} has idle workers, yet tasks of its queues have been due for more"
                " than {:g} s",
                server,
                after,
            )


class PassWatch:
    """A daemon thread: cancels the statement of an arbiter pass stuck over ``limit``. It logs
    holding ``fork_lock`` (the writer's ``busy``, taken around each fork), so no worker is
    forked while it holds the log's lock; when the writer keeps it, no fork can happen."""

    def __init__(self, limit: Callable[[], float], link: Link, fork_lock: threading.Lock) -> None:
        self.limit, self.link, self.fork_lock = limit, link, fork_lock
        self.started = time.monotonic()  # of the current pass; set by the arbiter
        self.busy = False  # the arbiter is in a pass (not waiting in its selector)

    def start(self) -> None:
        threading.Thread(target=self._watch, name="qsup-pass-watch", daemon=True).start()

    def _watch(self) -> None:
        while True:
            limit = self.limit()
            time.sleep(max(limit / 4, MIN_EVERY))
            stuck = time.monotonic() - self.started
            conn = self.link.conn
            if not self.busy or stuck < limit or conn is None or conn.closed:
                continue
            try:
                conn.cancel_safe()
            except psycopg.Error:
                pass
            self.started = time.monotonic()  # once per stall
            locked = self.fork_lock.acquire(timeout=1.0)
            try:
                log.event("claim_stalled").warning(
                    "the supervisor's loop was stuck for {:.1f} s (over QUEUE_STRANDED_AFTER):"
                    " cancelled the statement on its connection, which reconnects",
                    stuck,
                )
            finally:
                if locked:
                    self.fork_lock.release()
