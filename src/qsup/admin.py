"""Operator operations shared by the CLI and the HTTP API.

Each function takes an autocommit psycopg connection; SQL lives in ``sql/admin.sql``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from qsup import repo, scheduler, workflow_store
from qsup.errors import ConfigError, QsupError, TaskNotFound
from qsup.settings import Config
from qsup.sql import queries
from qsup.states import CLEARABLE
from qsup.task_ids import short_id

Conn = psycopg.Connection[Any]
Q = queries()
CANCEL_REASON = "cancelled by operator"


def cancel_task(conn: Conn, task_id: uuid.UUID, channel: str | None = None) -> str:
    """Cancel a task: ``'cancelled'`` (it had not started; waiting dependents are cancelled too)
    or ``'cancelling'`` (it runs: its server is asked to stop it, at once when ``channel``
    names the NOTIFY channel, else at its next heartbeat)."""
    with conn.transaction():
        row = conn.execute(Q["admin_lock_task"], {"id": task_id}).fetchone()
        if row is None:
            raise TaskNotFound(f"no task {task_id}")
        params = {"id": task_id, "reason": CANCEL_REASON}
        if row[0] in ("enqueued", "waiting"):
            conn.execute(Q["admin_cancel_unstarted"], params)
            workflow_store.settle_failures(conn, [task_id], "cancelled", channel)
            return "cancelled"
        if row[0] in ("picked_up", "running"):
            conn.execute(Q["admin_request_cancel"], params)
            if channel:
                repo.notify(conn, channel, repo.CANCEL_PAYLOAD)
            return "cancelling"
    raise QsupError(f"task {short_id(task_id)} is already {row[0]}: nothing to cancel")


def retry_tasks(
    conn: Conn,
    ids: Sequence[uuid.UUID] | None = None,
    *,
    all_failed: bool = False,
    queue: str | None = None,
    channel: str | None = None,
) -> list[uuid.UUID]:
    """Send failed/cancelled tasks back to the queue with their attempts reset; their ids."""
    if not ids and not all_failed:
        raise ConfigError("retry: give task ids or all_failed (--all-failed)")
    params = {"ids": list(ids or []), "all_failed": all_failed, "queue": queue}
    with conn.transaction():
        rows = conn.execute(Q["admin_retry_tasks"], params).fetchall()
        if channel:
            for name in sorted({row[1] for row in rows}):
                repo.notify(conn, channel, name)
    return [row[0] for row in rows]


def clear_tasks(
    conn: Conn, *, states: Sequence[str] | None = None, queue: str | None = None
) -> int:
    """Delete tasks (never picked-up or running ones) with their logs; the count."""
    chosen = list(states) if states else list(CLEARABLE)
    for state in chosen:
        if state not in CLEARABLE:
            raise ConfigError(
                f"clear: state {state!r} cannot be cleared (choose from {', '.join(CLEARABLE)})"
            )
    cur = conn.execute(Q["admin_clear_tasks"], {"states": chosen, "queue": queue})
    return cur.rowcount


def task_logs(conn: Conn, task_id: uuid.UUID) -> list[dict[str, Any]]:
    """A task's log rows, oldest first; TaskNotFound for an unknown id."""
    if repo.get_task(conn, task_id) is None:
        raise TaskNotFound(f"no task {task_id}")
    return repo.task_logs(conn, task_id)


def list_schedules(conn: Conn, config: Config) -> list[dict[str, Any]]:
    """Configured schedules with their stored state (paused, last and next fire)."""
    specs = scheduler.validate_schedules(config)
    state = scheduler.stored_state(conn, [s.name for s in specs]) if specs else {}
    now = datetime.now(UTC)
    result = []
    for spec in specs:
        row = state.get(spec.name, {})
        result.append(
            {
                "name": spec.name,
                "cron": spec.cron,
                "task": spec.task,
                "queue": spec.queue or "default",
                "timezone": spec.timezone,
                "on_missed": spec.on_missed,
                "paused": bool(row.get("paused")),
                "last_fire": row.get("last_fire"),
                "next_fire": row.get("next_fire") or spec.next_after(now),
            }
        )
    return result


def set_schedule_paused(
    conn: Conn, spec: scheduler.Schedule, paused: bool, now: datetime | None = None
) -> None:
    """Pause or resume a schedule on every server (resuming skips ticks passed while paused:
    it fires from the first tick after ``now``)."""
    next_fire = None if paused else spec.next_after(now or datetime.now(UTC))
    params = {"name": spec.name, "paused": paused, "next_fire": next_fire}
    conn.execute(Q["schedule_set_paused"], params)


def run_schedule_now(conn: Conn, config: Config, name: str, channel: str | None) -> uuid.UUID:
    """Enqueue a schedule's task now; its id."""
    return scheduler.run_now(conn, config, name, datetime.now(UTC), channel)
