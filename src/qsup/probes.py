"""Looking inside running tasks: operators' probes (``qsup task stack``, the running figures of
``task show`` and the API) and the progress tasks report. Shared by the writer, the CLI and the
HTTP API; SQL lives in ``sql/inside.sql``.

A probe travels like a cancel request: a row in ``queued_task_probes`` and a NOTIFY, the
heartbeat of the server holding the task (at once on the NOTIFY), the worker's pipe, the
worker's answer on its pipe, the supervisor's writer. No statement runs while nobody asks.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from qsup import repo
from qsup.errors import QsupError, TaskNotFound
from qsup.protocol import Inspected
from qsup.sql import queries
from qsup.task_ids import short_id

Conn = psycopg.Connection[Any]
Q = queries()
POLL_EVERY = 0.05  # seconds between looks for the answer
RUNNING = ("picked_up", "running")


class TaskNotRunning(QsupError):
    """The task has no worker to look into (not started yet, or ended)."""


# A reader whose role may not write (a read-only replica, a role without INSERT) still sees
# the task: only the figures asked of its worker are missing.
CANNOT_ASK = (
    TaskNotRunning,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ReadOnlySqlTransaction,
)


# --- the supervisor's writer --------------------------------------------------------------


def answer_probes(conn: Conn, answers: Sequence[Inspected]) -> None:
    params = {
        "ids": [a.task_id for a in answers],
        "stacks": [a.stack for a in answers],
        "cpu": [a.cpu if a.stack is not None else None for a in answers],
        "rss": [a.rss if a.stack is not None else None for a in answers],
        "running": [a.running if a.stack is not None else None for a in answers],
    }
    conn.execute(Q["answer_probes"], params)


# --- operators ----------------------------------------------------------------------------


def progress_line(progress: Mapping[str, Any] | None) -> str:
    """``50% copying {"files":3}``: what a task reported of fraction, message and data."""
    if not progress:
        return ""
    parts = []
    if progress.get("fraction") is not None:
        parts.append(f"{progress['fraction']:.0%}")
    if progress.get("message"):
        parts.append(str(progress["message"]))
    if progress.get("data"):
        parts.append(json.dumps(progress["data"], ensure_ascii=False, separators=(",", ":")))
    return " ".join(parts)


def _read(conn: Conn, task_id: uuid.UUID) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(Q["read_probe"], {"id": task_id}).fetchone()
    if row is None:
        raise TaskNotFound(f"no task {task_id}")
    return row


def request(conn: Conn, task_id: uuid.UUID, channel: str | None) -> Any:
    """Ask the server running the task; the request's time (the answer comes later). Raises
    TaskNotRunning when no worker runs it."""
    state = _read(conn, task_id)["state"]
    if state not in RUNNING:
        raise TaskNotRunning(f"task {short_id(task_id)} is not running (it is {state})")
    with conn.transaction():
        row = conn.execute(Q["request_probe"], {"id": task_id}).fetchone()
        if channel:
            repo.notify(conn, channel, repo.INSPECT_PAYLOAD)
    assert row is not None
    return row[0]


def inspect(
    conn: Conn, task_id: uuid.UUID, channel: str | None, wait: float
) -> dict[str, Any] | None:
    """Ask, then wait up to ``wait`` seconds for a fresh answer: the probe's row (``stack``,
    ``cpu_seconds``, ``rss_bytes``, ``running_seconds``, ``answered_at``, ``state``), or None
    when none came in time. Raises TaskNotRunning when no worker runs the task (also when it
    ended while the question travelled)."""
    asked = request(conn, task_id, channel)
    give_up = time.monotonic() + wait
    while True:
        row = _read(conn, task_id)
        if row["answered_at"] is not None and row["answered_at"] >= asked:
            if row["stack"] is None:
                state = row["state"] if row["state"] not in RUNNING else "not started yet"
                raise TaskNotRunning(f"task {short_id(task_id)} is not running (it is {state})")
            return row
        if time.monotonic() >= give_up:
            return None
        time.sleep(POLL_EVERY)


def last_answer(conn: Conn, task_id: uuid.UUID) -> dict[str, Any] | None:
    """The running figures of the last answer about a running task (no wait), else None."""
    row = _read(conn, task_id)
    if row["state"] not in RUNNING or row["answered_at"] is None or row["stack"] is None:
        return None
    return running_figures(row)


def running_figures(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a running task has cost so far, from a probe's row."""
    keys = ("cpu_seconds", "rss_bytes", "running_seconds")
    return {**{key: row[key] for key in keys}, "sampled_at": row["answered_at"]}


# --- stranded and stalled work ------------------------------------------------------------

STRANDED_SCAN = 100_000  # waiting tasks the stranded check reads at most (counts stop there)


@dataclass(frozen=True)
class Stranded:
    """Work no live server will run: ``queues`` {queue: tasks due too long, no live server
    serves it}, ``stalled`` {server name: its id} (idle workers, and due work it serves);
    ``reporter``: the smallest live server id (the one that logs it)."""

    queues: dict[str, int]
    stalled: dict[str, int]
    reporter: int | None = None

    def __bool__(self) -> bool:
        return bool(self.queues or self.stalled)

    def as_json(self) -> dict[str, Any]:
        return {
            "stranded": [{"queue": q, "tasks": n} for q, n in self.queues.items()],
            "stalled": [{"server": name} for name in self.stalled],
        }


def stranded_work(conn: Conn, after: float, server_timeout: float) -> Stranded:
    params = {"after": after, "server_timeout": server_timeout, "scan_limit": STRANDED_SCAN}
    rows = conn.execute(Q["stranded_work"], params).fetchall()
    queues = {name: int(tasks) for kind, name, tasks, _, _ in rows if kind == "stranded"}
    stalled = {name: int(server) for kind, name, _, server, _ in rows if kind == "stalled"}
    return Stranded(queues, stalled, rows[0][4] if rows else None)
