"""The supervisor's claiming connection: survives database restarts with backoff."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from loguru import logger

from qsup.db.connect import close_quietly, connect, describe, lost
from qsup.errors import DatabaseUnreachable

T = TypeVar("T")
# A vanished peer is noticed in about 5 s, not the system's 2 hours: the supervisor's liveness
# lock lives on this connection (see liveness.py), so it must know soon that it lost it.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 3,
}


class Link:
    """One autocommit connection; ``call`` returns None while the database is away."""

    def __init__(self, url: str, name: str, prepare_threshold: int | None = 0) -> None:
        self.url = url
        self.name = name  # application_name, so operators can tell our sessions apart
        self.options: dict[str, Any] = {
            "prepare_threshold": prepare_threshold,
            "application_name": name,
            **KEEPALIVES,
        }
        self.conn: psycopg.Connection[Any] | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.on_reconnect: Callable[[], None] | None = None
        self.on_lost: Callable[[], None] | None = None  # before the connection is closed
        self.connected_at = 0.0

    @property
    def up(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def open(self) -> None:
        """First connection: failure is fatal (exit 3)."""
        self.conn = connect(self.url, **self.options)
        self.connected_at = time.monotonic()

    def call(self, fn: Callable[[psycopg.Connection[Any]], T], *, now: bool = False) -> T | None:
        """Run ``fn(conn)``; on a lost connection, note it and return None. While the
        database is away, reconnection is tried with backoff, or at once with ``now`` (the
        last writes of a shutdown must not wait out a backoff of up to 10 s)."""
        if not self.up and not self._reconnect(now):
            return None
        assert self.conn is not None
        try:
            return fn(self.conn)
        except psycopg.OperationalError as exc:
            self._lost(exc)
            return None

    def connected_for(self) -> float:
        """Seconds since the current connection was made (0 when down)."""
        return time.monotonic() - self.connected_at if self.up else 0.0

    def check(self) -> None:
        """Its socket became readable while idle: the server ended the session (an idle
        autocommit connection without LISTEN gets nothing else)."""
        assert self.conn is not None
        try:
            self.conn.pgconn.consume_input()
            if self.conn.pgconn.status == psycopg.pq.ConnStatus.OK:
                return
            raise psycopg.OperationalError("the server closed the connection")
        except psycopg.OperationalError as exc:
            self._lost(exc)

    def _lost(self, exc: Exception) -> None:
        if self.conn is not None:
            logger.warning("{}", lost(describe(self.url), exc))
            if self.on_lost:
                self.on_lost()
        self.close()
        delay = min(10.0, 0.1 * 2**self.failures)
        self.retry_at = time.monotonic() + delay
        self.failures += 1
        logger.debug(
            "{} link down ({} failure(s)); next try in {:.1f} s", self.name, self.failures, delay
        )

    def _reconnect(self, now: bool = False) -> bool:
        if not now and time.monotonic() < self.retry_at:
            return False
        try:
            self.conn = connect(self.url, **self.options)
        except DatabaseUnreachable as exc:
            self._lost(exc)
            return False
        self.connected_at = time.monotonic()
        if self.failures:
            logger.info("reconnected to PostgreSQL after {} attempt(s)", self.failures)
        self.failures = 0
        if self.on_reconnect:
            self.on_reconnect()
        return True

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None
