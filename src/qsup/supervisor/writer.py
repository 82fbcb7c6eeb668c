"""The writer: flushes the outbox on a connection of its own, in a thread, so the arbiter
keeps claiming and handing out tasks while PostgreSQL commits the previous results. The SQL of
a flush lives here; the outbox is only data.

One flush is in flight at a time. When it ends the thread writes a byte to a pipe that sits in
the arbiter's selector; the arbiter collects the outcome there. ``busy`` is held for the whole
flush (and so for every log line the thread writes): the arbiter takes it around each fork,
so a worker never inherits a lock held mid-flush.
"""

from __future__ import annotations

import os
import threading
from contextlib import nullcontext
from typing import Any

import psycopg
from loguru import logger

from qsup import flow_store, probes, repo, workflow_store
from qsup.accounting import NO_USAGE
from qsup.supervisor import tally
from qsup.supervisor.link import Link
from qsup.supervisor.outbox import Outbox, timestamp
from qsup.supervisor.tally import Tally
from qsup.workflow import NewWorkflow

SHUTDOWN_WAIT = 5.0  # seconds shutdown waits for a flush in progress


class Writer:
    def __init__(self, url: str, name: str, prepare_threshold: int | None = 0) -> None:
        self.link = Link(url, name, prepare_threshold)
        self.busy = threading.Lock()
        self.wake_fd, self._signal_fd = os.pipe()
        os.set_blocking(self.wake_fd, False)
        self._ready = threading.Condition()
        self._job: tuple[Outbox, int, str | None] | None = None
        self._done: tuple[Outbox, bool] | None = None
        self.tally = Tally()  # outcomes written, not yet in the per-minute series
        self._server_id = 0
        threading.Thread(target=self._run, name="qsup-writer", daemon=True).start()

    def submit(self, outbox: Outbox, server_id: int, channel: str | None) -> None:
        """Start flushing ``outbox`` (call only when the last one was collected: the ledger's
        ``writing`` is None)."""
        with self._ready:
            self._job = (outbox, server_id, channel)
            self._ready.notify()

    def collect(self) -> tuple[Outbox, bool] | None:
        """After the wake fd fired: the outbox flushed and whether it was written."""
        try:
            os.read(self.wake_fd, 64)
        except BlockingIOError:
            pass
        with self._ready:
            done, self._done = self._done, None
            return done

    def flush_now(self, outbox: Outbox, server_id: int, channel: str | None) -> bool:
        """Flush in the calling thread (shutdown: no backoff); False if the writer thread
        stays busy."""
        if not self.busy.acquire(timeout=SHUTDOWN_WAIT):
            return False
        try:
            written = write(self.link, outbox, server_id, channel, now=True, counted=self.tally)
            self._count(server_id, force=True)
            return written
        finally:
            self.busy.release()

    def _run(self) -> None:
        while True:
            with self._ready:
                while self._job is None and not self.tally.due():
                    self._ready.wait(self.tally.wait())
                job, self._job = self._job, None
            if job is None:  # idle with outcomes the series does not count yet
                with self.busy:
                    self._count(self._server_id)
                continue
            outbox, server_id, channel = job
            with self.busy:
                try:
                    written = write(self.link, outbox, server_id, channel, counted=self.tally)
                except Exception:  # the thread must survive anything: the entries are retried
                    logger.exception("writing results failed; retrying")
                    self.link.close()
                    written = False
                self._server_id = server_id
                self._count(server_id)
            with self._ready:
                self._done = (outbox, written)
            os.write(self._signal_fd, b".")

    def _count(self, server_id: int, force: bool = False) -> None:
        """Add the outcomes written to the series when due (or now, with ``force``)."""
        if self.tally.due() or (force and self.tally.pending()):
            batch = self.tally.take()
            self.link.call(lambda conn: tally.record(conn, server_id, batch), now=force)

    def close(self) -> None:
        self.link.close()


def write(
    link: Link,
    outbox: Outbox,
    server_id: int,
    channel: str | None,
    now: bool = False,
    counted: Tally | None = None,
) -> bool:
    """Flush ``outbox``; False (entries kept) when the database is away (reconnecting at once
    with ``now``). A statement PostgreSQL refuses must not stop the server: the tasks
    concerned fail instead. The outcomes written go to ``counted`` (the per-minute series)."""
    try:

        def written(conn: Any) -> bool:
            outcomes = Tally.outcomes(outbox)  # flush() clears the outbox once written
            flush(conn, outbox, server_id, channel)
            if counted is not None:
                counted.add(outcomes)
            return True

        return link.call(written, now=now) is True
    except psycopg.Error as exc:
        logger.opt(exception=exc).error(
            "PostgreSQL refused {} updates; failing their tasks", len(outbox)
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        try:
            link.call(lambda conn: salvage(conn, outbox, server_id, reason))
        except psycopg.Error:
            outbox.clear()
        return True


def flush(conn: Any, outbox: Outbox, server_id: int, channel: str | None) -> None:
    """Write everything in one transaction, or in autocommit when one statement does it
    (two round trips and a commit fewer: slow tasks flush one start or one end at a time);
    on error nothing is cleared (retry later: every statement is idempotent)."""
    with nullcontext() if _one_statement(outbox) else conn.transaction():
        for task in outbox.enqueues:  # children first: their parents may complete below
            if isinstance(task, NewWorkflow):
                workflow_store.insert_from_task(conn, task, channel)
            else:
                repo.insert_task(conn, task, channel)
        if outbox.contexts or outbox.progress:
            repo.save_reports(conn, outbox.contexts, outbox.progress)
        if outbox.probes:
            probes.answer_probes(conn, list(outbox.probes.values()))
        if outbox.running:
            starts = [(i, timestamp(at), pid) for i, (at, pid) in outbox.running.items()]
            repo.mark_running(conn, server_id, starts)
        if outbox.handed_on:  # with the outcomes of the tasks whose slots they took over
            flow_store.hand_on_slots(conn, server_id, outbox.handed_on)
        wake = _write_outcomes(conn, outbox, server_id, channel)
        if outbox.logs:
            repo.insert_logs(conn, outbox.logs)
        if channel is not None:
            for queue in sorted(wake):
                repo.notify(conn, channel, queue)
    outbox.clear()
    outbox.released = bool(wake)


def _one_statement(outbox: Outbox) -> bool:
    """Only one kind of entry, written by one statement (the NOTIFYs after it are hints:
    they may commit on their own)."""
    chained = outbox.enqueues or outbox.failures or outbox.cancels or outbox.handed_on
    return not chained and sum(1 for entries in outbox.kinds() if entries) == 1


def _write_outcomes(conn: Any, outbox: Outbox, server_id: int, channel: str | None) -> set[str]:
    """Completions, retries, failures, releases, cancels (with what they release or
    cancel in turn); returns the queues that got new work."""
    wake: set[str] = set()
    if outbox.completed:
        wake.update(repo.complete_batch(conn, server_id, outbox.completed))
    if outbox.retries:
        wake.update(queue for _, queue in repo.retry_batch(conn, server_id, outbox.retries))
    if outbox.failures:
        failed = repo.fail_batch(conn, server_id, outbox.failures)
        workflow_store.settle_failures(conn, failed, "failed", channel)
    if outbox.releases:
        wake.update(repo.release_batch(conn, server_id, outbox.releases))
    if outbox.cancels:
        cancelled = repo.cancel_batch(conn, server_id, outbox.cancels)
        workflow_store.settle_failures(conn, cancelled, "cancelled", channel)
    return wake


def salvage(conn: Any, outbox: Outbox, server_id: int, error: str) -> None:
    """After PostgreSQL refused a flush: fail the tasks whose outcome could not be stored,
    so none stays held forever; drop the rest (logs, contexts, children)."""
    ids = outbox.task_ids() - set(outbox.releases) - set(outbox.cancels)
    message = f"qsup could not store this task's outcome: {error}"
    releases, handed_on = list(outbox.releases), list(outbox.handed_on)
    outbox.clear()
    if handed_on:  # they run: they hold their slots
        flow_store.hand_on_slots(conn, server_id, handed_on)
    if ids:
        repo.fail_batch(conn, server_id, [(i, message, None, None, NO_USAGE, None) for i in ids])
    if releases:
        repo.release_batch(conn, server_id, releases)
