"""The pruner: deletes finished tasks older than ``result_ttl`` (and what grows with them) on a
connection of its own, in a thread, so the arbiter's claims never wait behind it (SPEC §15).

Each round deletes batches of ``BATCH`` until one comes back short, then sleeps until the
oldest finished task left passes the TTL (:func:`qsup.supervisor.policy.prune_pause`). A batch
is one short transaction that skips locked rows; one server at a time has the turn. Measured on
the 2-core dev VM: 2,000 tasks per batch in 50-100 ms, 20,000-35,000 tasks/s (the cascades to
logs, dependencies and workflow steps included), far above what one server completes.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from loguru import logger

from qsup import series, workflow_store
from qsup.sql import queries
from qsup.supervisor import policy
from qsup.supervisor.link import Link

Q = queries()
BATCH = 2_000  # tasks per transaction: 50-100 ms of row locks on finished rows only
TURN_KEY = 0x7153_7571  # the advisory lock that gives one server the turn
RETRY_AFTER = 1.0  # seconds before the next try while the database is away
# A pause this long closes the connection until the next round (a connect costs ~5 ms): an idle
# server or one with long-lived results holds three connections, not four.
HANG_UP_AFTER = 10.0
# The first round waits this long after start: start-up (the first claims, the workers' forks)
# goes first; servers started together then prune one after another anyway (the turn).
FIRST_ROUND_AFTER = 3.0


class Pruner:
    """Start with :meth:`start`; the TTL follows reloads through :attr:`ttl`."""

    def __init__(self, url: str, name: str, ttl: float) -> None:
        self.link = Link(url, name)
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qsup-pruner", daemon=True)

    def start(self) -> None:
        """Start the thread (again: nothing)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def _run(self) -> None:
        pause: float | None = FIRST_ROUND_AFTER
        while not self._stop.wait(RETRY_AFTER if pause is None else pause):
            try:
                pause = self.link.call(self.run_round)
            except psycopg.Error:  # refused (a missing table mid-migration, say): try later
                logger.exception("pruning finished tasks failed")
                self.link.close()
                pause = None
            if pause is not None and pause >= HANG_UP_AFTER:
                self.link.close()

    def run_round(self, conn: psycopg.Connection[Any]) -> float:
        """Delete until a batch comes back short; returns the seconds to sleep."""
        ttl, total, due_in = self.ttl, 0, None
        while not self._stop.is_set():
            params = {"key": TURN_KEY, "ttl": ttl, "limit": BATCH}
            row = conn.execute(Q["prune_tasks_batch"], params).fetchone()
            deleted, mine, due_in = row if row else (0, False, None)
            total += deleted
            if deleted < BATCH or not mine:
                break
        if total:
            self._prune_rest(conn, ttl)
            # debug: under a short TTL a busy server prunes every second
            logger.debug("pruned {} finished task(s) older than {:g} s", total, ttl)
        return policy.prune_pause(None if due_in is None else float(due_in), ttl)

    def _prune_rest(self, conn: psycopg.Connection[Any], ttl: float) -> None:
        """Workflows whose steps all went, stale start-log rows of rate limits, and the
        per-minute series of those minutes."""
        while workflow_store.prune(conn, ttl, BATCH) == BATCH:
            pass
        while series.prune(conn, ttl, BATCH) == BATCH:
            pass
        while conn.execute(Q["prune_starts"], {"ttl": ttl, "limit": BATCH}).rowcount == BATCH:
            pass

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.link.close()
