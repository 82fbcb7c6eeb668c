"""The writer: flushes the outbox on a connection of its own, in a thread, so the arbiter
keeps claiming and handing out tasks while PostgreSQL commits the previous results.

One flush is in flight at a time. When it ends the thread writes a byte to a pipe that sits in
the arbiter's selector; the arbiter collects the outcome there. ``busy`` is held for the whole
flush (and so for every log line the thread writes): the arbiter takes it around each fork,
so a worker never inherits a lock held mid-flush.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
from loguru import logger

from qsup.supervisor.link import Link
from qsup.supervisor.outbox import Outbox

SHUTDOWN_WAIT = 5.0  # seconds shutdown waits for a flush in progress


class Writer:
    def __init__(self, url: str, name: str) -> None:
        self.link = Link(url, name)
        self.busy = threading.Lock()
        self.wake_fd, self._signal_fd = os.pipe()
        os.set_blocking(self.wake_fd, False)
        self._ready = threading.Condition()
        self._job: tuple[Outbox, int, str | None] | None = None
        self._done: tuple[Outbox, bool] | None = None
        self.flushing: Outbox | None = None  # what the thread is writing (main thread's view)
        threading.Thread(target=self._run, name="qsup-writer", daemon=True).start()

    def submit(self, outbox: Outbox, server_id: int, channel: str | None) -> None:
        """Start flushing ``outbox`` (call only when not ``in_flight``)."""
        with self._ready:
            self._job = (outbox, server_id, channel)
            self.flushing = outbox
            self._ready.notify()

    @property
    def in_flight(self) -> bool:
        return self.flushing is not None

    def collect(self) -> tuple[Outbox, bool] | None:
        """After the wake fd fired: the outbox flushed and whether it was written."""
        try:
            os.read(self.wake_fd, 64)
        except BlockingIOError:
            pass
        with self._ready:
            done, self._done = self._done, None
            if done is not None:
                self.flushing = None
            return done

    def flush_now(self, outbox: Outbox, server_id: int, channel: str | None) -> bool:
        """Flush in the calling thread (shutdown: no backoff); False if the writer thread
        stays busy."""
        if not self.busy.acquire(timeout=SHUTDOWN_WAIT):
            return False
        try:
            return write(self.link, outbox, server_id, channel, now=True)
        finally:
            self.busy.release()

    def _run(self) -> None:
        while True:
            with self._ready:
                while self._job is None:
                    self._ready.wait()
                outbox, server_id, channel = self._job
                self._job = None
            with self.busy:
                try:
                    written = write(self.link, outbox, server_id, channel)
                except Exception:  # the thread must survive anything: the entries are retried
                    logger.exception("writing results failed; retrying")
                    self.link.close()
                    written = False
            with self._ready:
                self._done = (outbox, written)
            os.write(self._signal_fd, b".")

    def close(self) -> None:
        self.link.close()


def write(
    link: Link, outbox: Outbox, server_id: int, channel: str | None, now: bool = False
) -> bool:
    """Flush ``outbox``; False (entries kept) when the database is away (reconnecting at once
    with ``now``). A statement PostgreSQL refuses must not stop the server: the tasks
    concerned fail instead."""
    try:

        def flush(conn: Any) -> bool:
            outbox.flush(conn, server_id, channel)
            return True

        return link.call(flush, now=now) is True
    except psycopg.Error as exc:
        logger.opt(exception=exc).error(
            "PostgreSQL refused {} updates; failing their tasks", len(outbox)
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        try:
            link.call(lambda conn: outbox.salvage(conn, server_id, reason))
        except psycopg.Error:
            outbox.clear()
        return True
