"""One typed function per query. The only module (with the CLI's reports) that names queries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString, NamedTuple

import psycopg
import psycopg.sql
from psycopg.rows import dict_row

from qsup import log
from qsup.accounting import Usage
from qsup.protocol import Job, TaskId
from qsup.sql import queries

Conn = psycopg.Connection[Any]
Q = queries()
CANCEL_PAYLOAD = "qsup:cancel"  # NOTIFY payload of an operator's cancel request (not a queue)
INSPECT_PAYLOAD = "qsup:inspect"  # an operator asks what a running task is doing


class NewTask(NamedTuple):
    """A task ready to insert: arguments already JSON-encoded and checked (a NamedTuple: one
    is built per enqueued task, in the batch enqueue's hot loop)."""

    id: TaskId  # a UUIDv7 as text (cheaper to make and to send than a uuid.UUID)
    name: str
    args: str
    kwargs: str
    queue: str = "default"
    priority: int = 0
    delay: float = 0.0
    eta: datetime | None = None
    max_retries: int = 3
    timeout: float | None = None
    unique_key: str | None = None
    parent: uuid.UUID | None = None
    depends_on: tuple[uuid.UUID, ...] = ()
    context: str = "{}"
    concurrency_key: str | None = None
    headers: str | None = None  # JSON text

    def params(self, channel: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            "delay": self.delay,
            "eta": self.eta,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "unique_key": self.unique_key,
            "parent": self.parent,
            "depends_on": list(self.depends_on),
            "context": self.context,
            "concurrency_key": self.concurrency_key,
            "headers": self.headers,
            "channel": channel,
        }

    @property
    def copyable(self) -> bool:
        """Plain tasks can go through COPY; the rest need :func:`insert_task`'s checks."""
        return not (
            self.unique_key or self.depends_on or self.delay or self.eta or self.concurrency_key
        )


# --- enqueue -------------------------------------------------------------------------------


def _insert_query(task: NewTask) -> LiteralString:
    return Q["insert_task"] if task.depends_on else Q["insert_plain_task"]


def insert_task(conn: Conn, task: NewTask, channel: str | None) -> tuple[uuid.UUID, str] | None:
    """Insert one task; ``None`` when its unique key is already held by an unfinished task."""
    row = conn.execute(_insert_query(task), task.params(channel)).fetchone()
    if row and log.debug_events:
        _enqueued(task)
    return (row[0], row[1]) if row else None


def _enqueued(task: NewTask) -> None:
    log.event("enqueued", task.id).debug("task {} enqueued in {}", task.name, task.queue)


Statement = tuple[LiteralString, dict[str, Any]]
Steps = Generator[Statement, tuple[Any, ...] | None, tuple[uuid.UUID, str] | None]


def insert_or_find(task: NewTask, channel: str | None) -> Steps:
    """Insert one task or, when an unfinished task holds its unique key, find that one; None
    if the key kept changing hands. Yields each statement and gets its first row back, so one
    logic serves a sync and an async connection (:func:`run_steps`, :func:`run_steps_async`)."""
    for _ in range(5):  # the holder of the key may finish between the two statements
        row = yield _insert_query(task), task.params(channel)
        if row is None:
            row = yield Q["find_unfinished_by_unique_key"], {"unique_key": task.unique_key}
        elif log.debug_events:
            _enqueued(task)
        if row is not None:
            return row[0], row[1]
    return None


def run_steps(conn: Conn, steps: Steps) -> tuple[uuid.UUID, str] | None:
    row = None
    while True:
        try:
            query, params = steps.send(row)
        except StopIteration as done:
            return done.value
        row = conn.execute(query, params).fetchone()


async def run_steps_async(
    conn: psycopg.AsyncConnection[Any], steps: Steps
) -> tuple[uuid.UUID, str] | None:
    row = None
    while True:
        try:
            query, params = steps.send(row)
        except StopIteration as done:
            return done.value
        row = await (await conn.execute(query, params)).fetchone()


def copy_rows(tasks: Iterable[NewTask]) -> Iterable[tuple[Any, ...]]:
    for t in tasks:
        if log.debug_events:
            _enqueued(t)
        yield (
            t.id,
            t.name,
            "enqueued",
            t.parent,
            t.queue,
            t.priority,
            t.args,
            t.kwargs,
            t.max_retries,
            t.timeout,
            t.context,
            t.headers,
        )


def copy_tasks(conn: Conn, tasks: Iterable[NewTask]) -> None:
    """Bulk insert plain tasks with COPY (call inside a transaction, then :func:`notify`)."""
    with conn.cursor().copy(Q["copy_tasks"]) as copy:
        for row in copy_rows(tasks):
            copy.write_row(row)


def notify(conn: Conn, channel: str, payload: str) -> None:
    conn.execute(Q["notify"], {"channel": channel, "payload": payload})


# --- claiming and completion (the supervisor's hot path) -----------------------------------


def claim_batch(
    conn: Conn,
    server_id: int,
    queues: Sequence[str],
    limit: int,
    default_timeout: float,
    skip: Sequence[str] = (),
) -> list[Job]:
    """Claim up to ``limit`` due tasks, highest priority first, none of the ``skip`` queues
    (paused or limited); they are this server's now (state ``picked_up``)."""
    params = {"server_id": server_id, "queues": list(queues), "limit": limit,
              "default_timeout": default_timeout, "skip": list(skip)}  # fmt: skip
    return [Job(*row) for row in conn.execute(Q["claim_batch"], params).fetchall()]


def next_due_in(conn: Conn, queues: Sequence[str], skip: Sequence[str] = ()) -> float | None:
    row = conn.execute(Q["next_due_in"], {"queues": list(queues), "skip": list(skip)}).fetchone()
    return row[0] if row else None


def mark_running(conn: Conn, server_id: int, rows: Sequence[tuple[TaskId, datetime, int]]) -> None:
    ids, started, pids = zip(*rows, strict=True)
    conn.execute(
        Q["mark_running"],
        {"ids": list(ids), "started": list(started), "pids": list(pids), "server_id": server_id},
    )


def complete_batch(
    conn: Conn,
    server_id: int,
    rows: Sequence[tuple[TaskId, str, float, float, int, float, int, int]],
) -> list[str]:
    """Rows of (id, result JSON text, started, done (epoch seconds), pid, CPU seconds, peak
    and growth bytes); completes the tasks this server still holds (a rescued task is another
    server's now) and returns the queues of the dependents this released."""
    document = (
        "["
        + ",".join(  # results are already JSON text: spliced in, not re-encoded
            f'{{"id":"{i}","result":{result},"started":{started!r},"done":{done!r},"pid":{pid},'
            f'"cpu":{cpu!r},"peak":{peak},"growth":{growth}}}'
            for i, result, started, done, pid, cpu, peak, growth in rows
        )
        + "]"
    )
    params = {"rows": document, "server_id": server_id}
    return [row[0] for row in conn.execute(Q["complete_batch"], params)]


def _usage_params(crashes: Sequence[str | None], usage: Sequence[Usage]) -> dict[str, Any]:
    cpu, peak, growth = zip(*usage, strict=True)
    return {"crashes": list(crashes), "cpu": list(cpu), "peak": list(peak), "growth": list(growth)}


def retry_batch(
    conn: Conn, server_id: int, rows: Sequence[tuple[TaskId, float, str, str | None, Usage]]
) -> list[tuple[uuid.UUID, str]]:
    """Rows of (id, delay seconds, error, how its worker died or None, usage); returns (id,
    queue) of the tasks requeued."""
    ids, delays, errors, crashes, usage = zip(*rows, strict=True)
    params = {
        "ids": list(ids),
        "delays": list(delays),
        "errors": list(errors),
        "server_id": server_id,
        **_usage_params(crashes, usage),
    }
    return [(row[0], row[1]) for row in conn.execute(Q["retry_batch"], params)]


def fail_batch(
    conn: Conn,
    server_id: int,
    rows: Sequence[tuple[TaskId, str, datetime | None, str | None, Usage, int | None]],
) -> list[uuid.UUID]:
    """Rows of (id, error, started or None, how its worker died or None, usage, the worker's
    pid or None); returns the ids marked failed."""
    ids, errors, started, crashes, usage, pids = zip(*rows, strict=True)
    params = {
        "ids": list(ids),
        "errors": list(errors),
        "started": list(started),
        "pids": list(pids),
        "server_id": server_id,
        **_usage_params(crashes, usage),
    }
    return [row[0] for row in conn.execute(Q["fail_batch"], params)]


def release_unknown(conn: Conn, server_id: int, known: Sequence[TaskId]) -> list[str]:
    """Requeue the tasks this server holds apart from ``known``; returns their queues."""
    params = {"server_id": server_id, "known": list(known)}
    return [row[0] for row in conn.execute(Q["release_unknown"], params)]


def release_batch(conn: Conn, server_id: int, ids: Sequence[TaskId]) -> list[str]:
    """Give tasks back without using an attempt; returns their queues."""
    params = {"ids": list(ids), "server_id": server_id}
    return [row[0] for row in conn.execute(Q["release_batch"], params)]


def cancel_dependents(conn: Conn, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Cancel, recursively, waiting tasks depending on these; returns the ids cancelled.

    One statement sees one snapshot: a dependent committed by a concurrent enqueue while
    this ran would be missed, so passes repeat (each with a fresh snapshot) until one
    cancels nothing."""
    cancelled: list[uuid.UUID] = []
    roots = list(ids)
    while roots:
        roots = [row[0] for row in conn.execute(Q["cancel_dependents"], {"ids": roots})]
        cancelled.extend(roots)
    return cancelled


def cancel_batch(conn: Conn, server_id: int, ids: Sequence[TaskId]) -> list[uuid.UUID]:
    params = {"ids": list(ids), "server_id": server_id}
    return [row[0] for row in conn.execute(Q["cancel_batch"], params)]


def insert_logs(conn: Conn, rows: Sequence[tuple[TaskId, str, str, datetime]]) -> None:
    ids, types, messages, dates = zip(*rows, strict=True)
    params = {
        "ids": list(ids),
        "types": list(types),
        "messages": list(messages),
        "dates": list(dates),
    }
    conn.execute(Q["insert_logs"], params)


def save_reports(
    conn: Conn, contexts: Mapping[TaskId, str], progress: Mapping[TaskId, str]
) -> None:
    """What running tasks reported: their contexts and their progress (JSON text by id)."""
    ids = list(contexts.keys() | progress.keys())
    params = {
        "ids": ids,
        "contexts": [*map(contexts.get, ids)],
        "progress": [*map(progress.get, ids)],
    }
    conn.execute(Q["save_reports"], params)


# --- servers -------------------------------------------------------------------------------

LIVENESS_CLASS = 0x7153_7573  # first key of each server's liveness lock (the second: its id)


def register_server(
    conn: Conn,
    server_name: str,
    max_workers: int,
    hostname: str,
    pid: int,
    queues: Sequence[str],
    take_lock: bool = True,
) -> int:
    """Add this server's row; with ``take_lock``, take its liveness lock on ``conn`` too."""
    params = {
        "take_lock": take_lock,
        "server_name": server_name,
        "max_workers": max_workers,
        "hostname": hostname,
        "pid": pid,
        "queues": list(queues),
        "lock_class": LIVENESS_CLASS,
    }
    row = conn.execute(Q["register_server"], params).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Beat:
    """What a heartbeat found (see the ``heartbeat`` query)."""

    was_running: bool
    declared_dead: list[str]
    orphans: bool
    cancel: list[TaskId]
    due: bool
    inspect: list[TaskId]


def heartbeat(
    conn: Conn,
    server_id: int,
    workers: tuple[int, int, int],
    counters: Mapping[str, int],
    queues: Sequence[str],
    timeout: float,
    may_declare: bool,
) -> Beat:
    """Refresh this server's row with ``workers`` (max, busy, idle) and its running totals,
    declare silent servers dead (``may_declare``), and report what needs doing."""
    max_workers, active, idle = workers
    params = {
        "server_id": server_id,
        "max_workers": max_workers,
        "active": active,
        "idle": idle,
        "counters": json.dumps(dict(counters)),
        "queues": list(queues),
        "timeout": timeout,
        "may_declare": may_declare,
        "lock_class": LIVENESS_CLASS,
    }
    row = conn.execute(Q["heartbeat"], params).fetchone()
    assert row is not None
    return Beat(bool(row[0]), list(row[1]), bool(row[2]), list(row[3]), bool(row[4]), list(row[5]))


def stop_server(conn: Conn, server_id: int) -> None:
    conn.execute(Q["stop_server"], {"server_id": server_id})


def listen(conn: Conn, channel: str) -> None:
    conn.execute(psycopg.sql.SQL(Q["listen"]).format(channel=psycopg.sql.Identifier(channel)))


@dataclass(frozen=True)
class Rescued:
    """A task taken back from a dead server (see the ``rescue_orphans`` query). verdict:
    requeue (never started: no attempt used), retry, fail (it ran), quarantine (orphaned
    unstarted more than ``max_crashes`` times)."""

    id: uuid.UUID
    state: str
    queue: str
    error: str | None
    verdict: str


def rescue_orphans(conn: Conn, max_crashes: int) -> list[Rescued]:
    """Requeue or fail the tasks held by servers not running."""
    rows = conn.execute(Q["rescue_orphans"], {"max_crashes": max_crashes})
    return [Rescued(*row) for row in rows]


# --- reads (CLI, API, refs) ----------------------------------------------------------------


def get_task(conn: Conn, task_id: uuid.UUID) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["get_task"], {"id": task_id}).fetchone()


def task_outcome(conn: Conn, task_id: uuid.UUID) -> tuple[str, Any, str | None] | None:
    row = conn.execute(Q["task_outcome"], {"id": task_id}).fetchone()
    return (row[0], row[1], row[2]) if row else None


def task_logs(conn: Conn, task_id: uuid.UUID) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["task_logs"], {"id": task_id}).fetchall()


def oldest_waiting(conn: Conn) -> float | None:
    row = conn.execute(Q["oldest_waiting"]).fetchone()
    return row[0] if row else None


def list_servers(conn: Conn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_servers"]).fetchall()
