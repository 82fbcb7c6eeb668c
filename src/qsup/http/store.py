"""Reads of the HTTP side: one typed function per query of ``sql/http.sql``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from qsup.sql import queries

Conn = psycopg.Connection[Any]
Q = queries()


@dataclass(frozen=True)
class TaskFilter:
    """Filters of the task list; ``None`` means any."""

    state: str | None = None
    queue: str | None = None
    name: str | None = None  # substring of the task's import path
    parent: uuid.UUID | None = None


@dataclass(frozen=True)
class Health:
    servers: int
    workers: int
    stuck: int


def _rows(conn: Conn, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q[name], params).fetchall()


def list_tasks(
    conn: Conn, flt: TaskFilter, limit: int, before: tuple[datetime, uuid.UUID] | None
) -> list[dict[str, Any]]:
    """A page of tasks, newest first, strictly older than the ``before`` cursor."""
    params = {
        "state": flt.state,
        "queue": flt.queue,
        "name": flt.name,
        "parent": flt.parent,
        "before_date": before[0] if before else None,
        "before_id": before[1] if before else None,
        "limit": limit,
    }
    return _rows(conn, "http_list_tasks", params)


def get_task(conn: Conn, task_id: uuid.UUID) -> dict[str, Any] | None:
    rows = _rows(conn, "http_get_task", {"id": task_id})
    return rows[0] if rows else None


def task_children(conn: Conn, task_id: uuid.UUID) -> list[dict[str, Any]]:
    return _rows(conn, "http_task_children", {"id": task_id})


def task_dependencies(conn: Conn, task_id: uuid.UUID) -> list[dict[str, Any]]:
    return _rows(conn, "http_task_dependencies", {"id": task_id})


def task_dependents(conn: Conn, task_id: uuid.UUID) -> list[dict[str, Any]]:
    return _rows(conn, "http_task_dependents", {"id": task_id})


def task_exists(conn: Conn, task_id: uuid.UUID) -> bool:
    row = conn.execute(Q["http_task_exists"], {"id": task_id}).fetchone()
    return bool(row and row[0])


def task_logs(conn: Conn, task_id: uuid.UUID, after: int, limit: int) -> list[dict[str, Any]]:
    return _rows(conn, "http_task_logs", {"id": task_id, "after": after, "limit": limit})


def health(conn: Conn, server_timeout: float, task_timeout: float) -> Health:
    row = conn.execute(
        Q["http_health"], {"server_timeout": server_timeout, "task_timeout": task_timeout}
    ).fetchone()
    assert row is not None
    return Health(servers=int(row[0]), workers=int(row[1]), stuck=int(row[2]))


def enqueued_total(conn: Conn) -> int:
    row = conn.execute(Q["http_enqueued_total"]).fetchone()
    return int(row[0]) if row else 0


def servers(conn: Conn) -> list[dict[str, Any]]:
    return _rows(conn, "http_servers", {})


def oldest_due(conn: Conn) -> list[tuple[str, float, int]]:
    """Per queue: ``(queue, age of the oldest due enqueued task, tasks waiting to retry)``."""
    rows = conn.execute(Q["http_oldest_due"]).fetchall()
    return [(q, float(age), int(n)) for q, age, n in rows]
