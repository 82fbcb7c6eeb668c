"""Coalesced wake-ups of a producer process (SPEC §15).

PostgreSQL serialises the commits of notifying transactions on one cluster-wide lock, held
through the commit's WAL flush: with ``pg_notify`` in every enqueue's own transaction, 16
producers made 3,724 tasks/s against 5,543/s without NOTIFY (48: 1,964/s against 3,604/s). So
an enqueue through the :class:`~qsup.api.Queue`'s pool commits without NOTIFY, and then:

- a queue not woken by this process in the last ``WAKE_EVERY`` is woken at once, on the same
  connection, in a transaction of its own that does not wait for its WAL flush (a wake-up is a
  hint: lost in a crash, the fallback poll covers it), so the lock is held for microseconds
  and an idle server starts the task as soon as before;
- the others are woken once at the end of that window, by a thread: a burst of enqueues makes
  at most one NOTIFY per queue per ``WAKE_EVERY``, and the last task of a burst still wakes a
  server, after its commit.

Sending from the thread alone (the producer never waiting for the notify lock) measured the
same on the 2-core VM but grew each producer's pool to two connections: 48 producer processes
then ran out of ``max_connections``.

An enqueue in the caller's transaction (``connection=``) keeps its NOTIFY inside that
transaction: PostgreSQL delivers it on commit only, and drops it on rollback.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from loguru import logger

from qsup.sql import queries

Q = queries()
Conn = psycopg.Connection[Any]
WAKE_EVERY = 0.005  # seconds: at most one NOTIFY per queue per 5 ms per process (DBOS: 10 ms)
NEVER = float("-inf")
RETRY_AFTER = 1.0  # seconds before a failed wake-up is sent again


def due_now(
    queues: Iterable[str], last: Mapping[str, float], now: float, every: float = WAKE_EVERY
) -> tuple[list[str], float | None]:
    """The queues to wake now (none woken in the last ``every`` seconds) and when the next of
    the others is due (None: none waits)."""
    due: set[str] = set()
    waits: list[float] = []
    for queue in queues:
        at = last.get(queue, NEVER) + every
        if now >= at:
            due.add(queue)
        else:
            waits.append(at)
    return sorted(due), min(waits, default=None)


def notify_queues(conn: Conn, channel: str, queues: Collection[str]) -> None:
    conn.execute(Q["notify_queues"], {"channel": channel, "queues": list(queues)})


class Waker:
    """One per :class:`~qsup.api.Queue`; ``connection`` lends a pooled connection to the
    thread."""

    def __init__(self, channel: str, connection: Callable[[], AbstractContextManager[Conn]]):
        self.channel = channel
        self.connection = connection
        self._start()
        _WAKERS.add(self)

    def _start(self) -> None:
        self._pid = os.getpid()  # a forked child starts over: the thread did not come along
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._last: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def after_commit(self, conn: Conn, queues: Collection[str]) -> None:
        """``queues`` got tasks that ``conn`` just committed: wake them now or soon."""
        if os.getpid() != self._pid:
            self._start()
        with self._cond:
            self._closed = False  # a Queue used again after close() wakes servers again
            due, later = due_now(queues, self._last, time.monotonic())
            now = time.monotonic()
            self._last.update(dict.fromkeys(due, now))
            self._pending.difference_update(due)  # woken after their commit too
            if later is not None:
                self._pending.update(set(queues) - set(due))
                self._ensure_thread()
                self._cond.notify()
        if due:
            try:
                notify_queues(conn, self.channel, due)
            except psycopg.Error as exc:  # the task is committed: never fail its enqueue
                logger.warning("could not wake servers ({}); the thread tries again", exc)
                with self._cond:
                    self._pending.update(due)
                    self._ensure_thread()
                    self._cond.notify()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="qsup-waker", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:  # close() sends what waits, on the pool still open
                    return
                due, later = due_now(self._pending, self._last, time.monotonic())
                if not due:
                    self._cond.wait(max(0.0, (later or 0.0) - time.monotonic()))
                    continue
                now = time.monotonic()
                self._last.update(dict.fromkeys(due, now))
                self._pending.difference_update(due)
            if not self._send(due):  # again in a while (the fallback poll may come first)
                with self._cond:
                    self._pending.update(due)
                time.sleep(RETRY_AFTER)

    def _send(self, queues: Collection[str]) -> bool:
        try:
            with self.connection() as conn:
                notify_queues(conn, self.channel, queues)
            return True
        except Exception as exc:  # noqa: BLE001 - the thread must live on
            logger.warning("could not wake servers for {}: {}", ", ".join(queues), exc)
            return False

    def close(self) -> None:
        """Stop the thread once the wake-up it may be sending is sent, then send what waits:
        the Queue closes its pool next, which the thread must not open again."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=RETRY_AFTER + 5.0)
        self.flush()

    def flush(self) -> None:
        """Send what waits now (the Queue closes, the process exits)."""
        if os.getpid() != self._pid:
            return
        with self._cond:
            queues, self._pending = sorted(self._pending), set()
        if queues:
            self._send(queues)


_WAKERS: weakref.WeakSet[Waker] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for waker in list(_WAKERS):
        waker.flush()
