"""Read routes: health, liveness and the JSON API (``/api/...``)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import uuid
from datetime import datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from qsup import counts, flow_store, probes, stats
from qsup.admin import list_schedules
from qsup.db.connect import one_line
from qsup.errors import QsupError
from qsup.http import store
from qsup.http.backend import backend_of
from qsup.http.common import JSON, bad, parse_int, parse_uuid, text_param, typed_task_id
from qsup.states import STATES

STUCK_LIMIT = 10  # more stuck tasks than this: degraded
HEALTH_TIMEOUT = 3.0
MAX_LIMIT = 500
MAX_LOGS = 1000
THROUGHPUT_MINUTES = 30


def encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['date_enqueued'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, task_id = raw.partition("|")
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed, uuid.UUID(task_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad("cursor: invalid; use the next_cursor of a previous page") from None


def task_filter(request: Request) -> store.TaskFilter:
    state = request.query_params.get("state")  # typed: an empty value is an error too
    if state is not None and state not in STATES:
        raise bad(f"state: expected one of {', '.join(STATES)}")
    parent = request.query_params.get("parent")
    return store.TaskFilter(
        state=state,
        queue=text_param(request, "queue"),
        name=text_param(request, "name"),
        parent=parse_uuid(parent, "parent") if parent is not None else None,
    )


# --- handlers -------------------------------------------------------------------------------


def livez(request: Request) -> Response:
    return JSON({"status": "ok"})


def health_queue(request: Request) -> Response:
    """Seed semantics: healthy / degraded (tasks_stuck, stranded_work) with 200, unhealthy
    with 503. Stranded work: due tasks no live server will run (``stranded``: queues no live
    server serves; ``stalled``: servers with idle workers that leave them waiting)."""
    backend = backend_of(request)
    cfg = backend.config
    try:
        with backend.connection(timeout=HEALTH_TIMEOUT) as conn:
            health = store.health(conn, cfg.server_timeout, cfg.task_timeout)
            stranded = probes.stranded_work(conn, cfg.stranded_after, cfg.server_timeout)
    except Exception as exc:  # noqa: BLE001 - any database failure is "unhealthy"
        return JSON({"status": "unhealthy", "error": one_line(exc, type(exc).__name__)}, 503)
    if health.servers == 0:
        return JSON({"status": "unhealthy", "reason": "no_active_workers"}, status_code=503)
    body: dict[str, Any] = {"status": "healthy", "workers": health.workers}
    if stranded:
        body.update(status="degraded", reason="stranded_work", **stranded.as_json())
    if health.stuck > STUCK_LIMIT:
        body.update(status="degraded", reason="tasks_stuck", stuck_tasks=health.stuck)
    return JSON(body)


def list_tasks(request: Request) -> Response:
    flt = task_filter(request)
    limit = parse_int(request, "limit", 50, 1, MAX_LIMIT)
    cursor = text_param(request, "cursor")
    before = decode_cursor(cursor) if cursor else None
    with backend_of(request).connection() as conn:
        rows = store.list_tasks(conn, flt, limit + 1, before)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return JSON({"tasks": page, "next_cursor": next_cursor})


def get_task(request: Request) -> Response:
    with backend_of(request).connection() as conn:
        task_id = typed_task_id(conn, request)
        task = store.get_task(conn, task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        if task["state"] in probes.RUNNING:  # its last figures; fresh ones for the next look
            task["running_now"] = probes.last_answer(conn, task_id)
            with contextlib.suppress(*probes.CANNOT_ASK):
                probes.request(conn, task_id, backend_of(request).config.wake_channel)
        task["children"] = store.task_children(conn, task_id)
        task["dependencies"] = store.task_dependencies(conn, task_id)
        task["dependents"] = store.task_dependents(conn, task_id)
    return JSON(task)


def task_logs(request: Request) -> Response:
    after = parse_int(request, "after", 0, 0, 2**31 - 1)
    limit = parse_int(request, "limit", MAX_LOGS, 1, MAX_LOGS)
    with backend_of(request).connection() as conn:
        task_id = typed_task_id(conn, request)
        if not store.task_exists(conn, task_id):
            raise HTTPException(404, f"no task {task_id}")
        logs = store.task_logs(conn, task_id, after, limit)
    return JSON({"task_id": task_id, "logs": logs})


def stats_endpoint(request: Request) -> Response:
    """Counts (``estimated``: some are the planner's, see qsup.counts), throughput and run
    times from the per-minute series; capped reads, whatever the table holds."""
    backend = backend_of(request)
    with backend.connection() as conn:
        found = counts.task_counts(conn)
        health = store.health(conn, backend.config.server_timeout, backend.config.task_timeout)
        waiting = store.oldest_due(conn)
        throughput = stats.throughput(conn, THROUGHPUT_MINUTES)
        report = stats.queue_stats(conn, found)
        limits = flow_store.usage_report(conn)
    queues: dict[str, dict[str, int]] = {}
    for c in found:
        queues.setdefault(c.queue, {})[c.state] = c.n
    by_state = report["tasks_by_state"]
    return JSON(
        {
            "states": by_state,
            "queues": queues,
            "total": sum(by_state.values()),
            "estimated": report["estimated"],
            "estimated_states": report["estimated_states"],
            "stuck": health.stuck,
            "workers": health.workers,
            "servers": health.servers,
            "oldest_due_seconds": {q: age for q, age, _ in waiting},
            "throughput": throughput,
            "completed_last_minute": report["completed_last_minute"],
            "completed_last_hour": report["completed_last_hour"],
            "failed_last_hour": report["failed_last_hour"],
            "durations_by_task": report["durations_by_task"],
            "failures_by_task": report["failures_by_task"],
            "flow": limits,  # paused and limited queues, their limits and use
        }
    )


def servers(request: Request) -> Response:
    with backend_of(request).connection() as conn:
        rows = store.servers(conn)
    return JSON({"servers": rows})


def schedules(request: Request) -> Response:
    backend = backend_of(request)
    with backend.connection() as conn:
        try:
            rows = list_schedules(conn, backend.config)
        except QsupError as exc:  # schedules in the configuration are invalid
            raise HTTPException(409, str(exc)) from None
    return JSON({"schedules": rows})
