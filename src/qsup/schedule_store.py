"""The fleet's schedules in the database (``schedules.sql``, migration 0011).

Each server declares its schedules at start and on SIGHUP: their definition and the task a
run enqueues, as that server builds it (the *template*: the task's name after its ``@task``
defaults, the encoded arguments, queue, priority, retries, timeout, concurrency key). So
``qsup schedule list|pause|resume|run`` and ``/api/schedules`` work from the database URL
alone, without the configuration or the task's code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from loguru import logger
from psycopg.rows import dict_row
from uuid_utils import uuid7

from qsup import repo
from qsup.encoding import encode_arguments, resolve_task
from qsup.flow import concurrency_key
from qsup.scheduler import Schedule
from qsup.settings import Config
from qsup.sql import queries
from qsup.task_options import TaskOptions, settle

Conn = psycopg.Connection[Any]
Q = queries()
KEEP_STOPPED = 86400.0  # seconds a stopped server's schedules stay listed: last night's, seen


@dataclass(frozen=True)
class Declared:
    """A schedule as the servers declared it, with its state."""

    spec: Schedule
    template: dict[str, Any] | None
    paused: bool
    last_fire: datetime | None
    next_fire: datetime | None
    servers: list[dict[str, Any]]  # {id, host, pid, running}


def template(config: Config, spec: Schedule) -> str | None:
    """The task a run of ``spec`` enqueues, as JSON; None when it cannot be built here (the
    server logs why; its firing reports the error at each tick as before)."""
    try:
        fn = resolve_task(spec.task)
        name, queue, priority, retries, timeout = settle(
            fn, TaskOptions(queue=spec.queue, priority=spec.priority), config.max_retries
        )
        kwargs = dict(spec.kwargs)
        args_json, kwargs_json = encode_arguments(spec.args, kwargs, config.max_args_bytes)
        key = concurrency_key(
            None, getattr(fn, "defaults", {}).get("concurrency_key"), spec.args, kwargs
        )
    except Exception as exc:  # noqa: BLE001 - user code: one bad schedule must not stop the rest
        logger.warning("schedule {}: `qsup schedule run` cannot enqueue it: {}", spec.name, exc)
        return None
    return json.dumps(
        {
            "name": name,
            "args": args_json,
            "kwargs": kwargs_json,
            "queue": queue,
            "priority": priority,
            "max_retries": retries,
            "timeout": timeout,
            "concurrency_key": key,
        }  # fmt: skip
    )


def declare(conn: Conn, config: Config, specs: Sequence[Schedule], server_id: int) -> None:
    """Server ``server_id`` runs ``specs`` (and no other schedule it declared before)."""
    params = {
        "server_id": server_id,
        "keep": KEEP_STOPPED,
        "names": [s.name for s in specs],
        "crons": [s.cron for s in specs],
        "timezones": [s.timezone for s in specs],
        "tasks": [s.task for s in specs],
        "queues": [s.queue for s in specs],
        "on_missed": [s.on_missed for s in specs],
        "templates": [template(config, s) for s in specs],
    }
    conn.execute(Q["schedule_declare"], params)


def declared(conn: Conn, name: str | None = None) -> list[Declared]:
    """The schedules declared by servers running or stopped less than a day ago (or the one
    named ``name``), by name."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(Q["schedules_declared"], {"name": name, "keep": KEEP_STOPPED})
        return [
            Declared(
                Schedule(
                    row["name"],
                    row["cron"],
                    row["task"],
                    queue=row["queue"],
                    timezone=row["timezone"],
                    on_missed=row["on_missed"],
                    source="the database",
                ),  # fmt: skip
                row["template"],
                row["paused"],
                row["last_fire"],
                row["next_fire"],
                row["servers"],
            )
            for row in rows
        ]


def task_from_template(found: dict[str, Any]) -> repo.NewTask:
    """A new task from a declared template (no unique key: a run is not a tick)."""
    return repo.NewTask(
        str(uuid7()),
        found["name"],
        found["args"],
        found["kwargs"],
        found["queue"],
        found["priority"],
        max_retries=found["max_retries"],
        timeout=found["timeout"],
        concurrency_key=found["concurrency_key"],
    )
