"""Operator operations shared by the CLI and the HTTP API.

Each function takes an autocommit psycopg connection; SQL lives in ``sql/admin.sql``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from qsup import repo, schedule_store, scheduler, workflow_store
from qsup.errors import ConfigError, QsupError, TaskNotFound
from qsup.settings import Config
from qsup.sql import queries
from qsup.states import CLEARABLE
from qsup.task_filter import TaskFilter
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


def find_tasks(conn: Conn, chosen: TaskFilter) -> list[dict[str, Any]]:
    """The tasks ``chosen`` selects, newest first (a page when it has a limit)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["admin_find_tasks"], chosen.params()).fetchall()


def find_page(conn: Conn, chosen: TaskFilter) -> tuple[list[dict[str, Any]], bool]:
    """A page of :func:`find_tasks` and whether more tasks follow it (one row looked ahead)."""
    if chosen.limit is None:
        return find_tasks(conn, chosen), False
    rows = find_tasks(conn, replace(chosen, limit=chosen.limit + 1))
    return rows[: chosen.limit], len(rows) > chosen.limit


def cancel_tasks(
    conn: Conn, ids: Sequence[uuid.UUID], channel: str | None = None
) -> dict[str, int]:
    """Cancel each task as :func:`cancel_task` does; how many ended in each outcome
    (``cancelled``, ``cancelling``, ``skipped``: finished or gone meanwhile)."""
    outcomes = {"cancelled": 0, "cancelling": 0, "skipped": 0}
    for task_id in ids:
        try:
            outcomes[cancel_task(conn, task_id, channel)] += 1
        except QsupError:
            outcomes["skipped"] += 1
    return outcomes


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


def _listed(
    spec: scheduler.Schedule, state: dict[str, Any], servers: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "task": spec.task,
        "queue": spec.queue or "default",
        "timezone": spec.timezone,
        "on_missed": spec.on_missed,
        "paused": bool(state.get("paused")),
        "last_fire": state.get("last_fire"),
        "next_fire": state.get("next_fire") or spec.next_after(now),
        "servers": servers,
    }


def list_schedules(conn: Conn, config: Config) -> list[dict[str, Any]]:
    """The schedules the servers declared (running or stopped less than a day ago: ``servers``
    says which, and whether each still runs) and those of ``config`` that none declared, with
    their stored state (paused, last and next fire), by name."""
    now = datetime.now(UTC)
    fleet = {found.spec.name: found for found in schedule_store.declared(conn)}
    local = [s for s in scheduler.validate_schedules(config) if s.name not in fleet]
    state = scheduler.stored_state(conn, [s.name for s in local]) if local else {}
    rows = [
        _listed(
            f.spec,
            {"paused": f.paused, "last_fire": f.last_fire, "next_fire": f.next_fire},
            f.servers,
            now,
        )  # fmt: skip
        for f in fleet.values()
    ]
    rows += [_listed(spec, state.get(spec.name, {}), [], now) for spec in local]
    return sorted(rows, key=lambda row: row["name"])


def find_schedule(
    conn: Conn, config: Config, name: str
) -> tuple[scheduler.Schedule, schedule_store.Declared | None]:
    """A schedule of ``config``, else one a server declared (with its declaration); an
    unknown name is a ConfigError (exit 2, HTTP 404), and nothing is stored for it."""
    for spec in scheduler.validate_schedules(config):
        if spec.name == name:
            return spec, None
    for found in schedule_store.declared(conn, name):
        return found.spec, found
    raise ConfigError(
        f"schedule {name!r}: no such schedule in the configuration or declared by a server"
        " running or stopped in the last day"
    )


def set_schedule_paused(
    conn: Conn, spec: scheduler.Schedule, paused: bool, now: datetime | None = None
) -> None:
    """Pause or resume a schedule on every server (resuming skips ticks passed while paused:
    it fires from the first tick after ``now``)."""
    next_fire = None if paused else spec.next_after(now or datetime.now(UTC))
    params = {"name": spec.name, "paused": paused, "next_fire": next_fire}
    conn.execute(Q["schedule_set_paused"], params)


def run_schedule_now(conn: Conn, config: Config, name: str, channel: str | None) -> uuid.UUID:
    """Enqueue a schedule's task now; its id. A schedule of ``config`` is built here; a
    declared one from the task its server built (so its code need not be importable here)."""
    spec, found = find_schedule(conn, config, name)
    if found is None:
        row = scheduler.build_task(config, spec, None)
    elif found.template is None:
        raise QsupError(f"schedule {name!r}: its servers could not build its task (see their log)")
    else:
        row = schedule_store.task_from_template(found.template)
    return scheduler.enqueue_run(conn, name, row, datetime.now(UTC), channel)
