"""The LISTEN connection: a socket in the arbiter's selector, drained without blocking."""

from __future__ import annotations

import os
from typing import Any

import psycopg

from qsup import repo
from qsup.db.connect import close_quietly, connect


class Listener:
    """Holds one autocommit connection subscribed to the notify channel."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.conn: psycopg.Connection[Any] | None = None

    def open(self) -> int:
        """Connect and LISTEN; returns the socket to select on. Raises DatabaseUnreachable."""
        self.close()
        self.conn = connect(self.url, application_name=f"qsup-listen-{os.getpid()}")
        repo.listen(self.conn, self.channel)
        return self.conn.fileno()

    def drain(self) -> list[str]:
        """Payloads received so far; raises psycopg.OperationalError when the link is lost."""
        assert self.conn is not None
        return [n.payload for n in self.conn.notifies(timeout=0)]

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None
