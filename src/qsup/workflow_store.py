"""Workflows in the database: written in one statement, unwound after a failure, read back.

:func:`settle_failures` is what every path that fails or cancels tasks calls (the writer, the
rescue of dead servers' tasks, an operator's cancel): the cascade to dependents, the release
of steps that tolerate failures, and for a workflow whose end failed, the stop of its other
steps and the compensations of its completed ones, all in the caller's transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from loguru import logger
from psycopg.rows import dict_row

from qsup import repo
from qsup.errors import QsupError, TaskDefinitionError
from qsup.sql import queries
from qsup.workflow import NewWorkflow

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]
Q = queries()


def _insert_params(new: NewWorkflow, channel: str | None) -> dict[str, Any]:
    return {
        "id": new.id,
        "label": new.label,
        "output": new.output,
        "parent": new.parent,
        "unique_key": new.unique_key,
        "tasks": new.tasks,
        "steps": new.steps,
        "edges": new.edges,
        "queues": list(new.queues),
        "channel": channel,
    }


def insert(conn: Conn, new: NewWorkflow, channel: str | None) -> tuple[str, list[str]]:
    """Write ``new`` (inside a transaction) or, when an unfinished workflow holds its unique
    key, find that one; returns its id and its steps' ids."""
    if new.unique_key is not None:
        conn.execute(Q["workflow_lock_key"], {"unique_key": new.unique_key})
        row = conn.execute(
            Q["workflow_find_unfinished_by_key"], {"unique_key": new.unique_key}
        ).fetchone()
        if row is not None:
            return str(row[0]), [str(i) for i in row[1]]
    with _refusals():
        conn.execute(Q["insert_workflow"], _insert_params(new, channel))
    return new.id, list(new.task_ids)


async def insert_async(
    conn: AsyncConn, new: NewWorkflow, channel: str | None
) -> tuple[str, list[str]]:
    if new.unique_key is not None:
        await conn.execute(Q["workflow_lock_key"], {"unique_key": new.unique_key})
        cur = await conn.execute(
            Q["workflow_find_unfinished_by_key"], {"unique_key": new.unique_key}
        )
        row = await cur.fetchone()
        if row is not None:
            return str(row[0]), [str(i) for i in row[1]]
    with _refusals():
        await conn.execute(Q["insert_workflow"], _insert_params(new, channel))
    return new.id, list(new.task_ids)


def insert_from_task(conn: Conn, new: NewWorkflow, channel: str | None) -> None:
    """Write a workflow a running task added (its server's flush, in a transaction). One
    that cannot be written (a step's unique key is held) is logged and dropped: retrying the
    flush would never succeed, and would hold back every other result."""
    try:
        with conn.transaction():  # a savepoint: the rest of the flush goes on
            insert(conn, new, channel)
    except TaskDefinitionError as exc:
        logger.bind(task_id=new.parent).warning(
            "workflow {} added by task {} was not written: {}", new.id, new.parent, exc
        )


@contextmanager
def _refusals() -> Iterator[None]:
    """A step's unique key already held, or a parent that is gone: a TaskDefinitionError."""
    try:
        yield
    except psycopg.errors.UniqueViolation:
        raise TaskDefinitionError(
            "a step's unique key is held by an unfinished task; nothing was written"
        ) from None
    except psycopg.errors.ForeignKeyViolation:
        raise TaskDefinitionError(
            "the workflow's parent task does not exist; nothing was written"
        ) from None


# --- failures and cancellation -----------------------------------------------------------


def settle_failures(
    conn: Conn, ids: Sequence[Any], outcome: str = "failed", channel: str | None = None
) -> list[uuid.UUID]:
    """After tasks failed (``outcome`` 'failed') or were cancelled: cancel their dependents,
    release the steps that tolerate failures, and unwind the workflows whose end failed.
    Returns the dependents cancelled (call inside the transaction that ended the tasks)."""
    if not ids:
        return []
    cancelled = repo.cancel_dependents(conn, [uuid.UUID(str(i)) for i in ids])
    rows = conn.execute(
        Q["workflow_after_failure"],
        {"ids": [*map(str, ids), *map(str, cancelled)], "state": outcome},
    ).fetchall()
    wake = {value for kind, value in rows if kind == "wake"}
    failed = [value for kind, value in rows if kind == "workflow"]
    if failed:
        verb = "failed" if outcome == "failed" else "was cancelled"
        wake |= unwind(conn, failed, f"cancelled: its workflow {verb}", channel)
    if channel:
        for queue in sorted(wake):
            repo.notify(conn, channel, queue)
    return cancelled


def unwind(conn: Conn, workflows: list[str], reason: str, channel: str | None) -> set[str]:
    """Stop what is left of ``workflows`` (just marked failed or cancelled) and enqueue the
    compensations of their completed steps; returns the queues to wake."""
    rows = conn.execute(
        Q["workflow_stop_rest"], {"workflows": workflows, "reason": reason}
    ).fetchall()
    stopped = [task_id for task_id, cancelled in rows if cancelled]
    if stopped:  # their own dependents outside the workflow (workflows added by a step)
        settle_failures(conn, stopped, "cancelled", channel)
    if channel and any(not cancelled for _, cancelled in rows):
        repo.notify(conn, channel, repo.CANCEL_PAYLOAD)
    return {row[0] for row in conn.execute(Q["workflow_compensate"], {"workflows": workflows})}


def cancel_workflow(conn: Conn, workflow_id: uuid.UUID, channel: str | None = None) -> None:
    """An operator cancels a workflow: the rest stops, the completed steps are compensated."""
    shown = describe(conn, workflow_id)
    if shown is None:
        raise QsupError(f"no workflow {workflow_id}")
    if shown["state"] == "completed":  # nothing to stop, and nothing to undo
        raise QsupError(f"workflow {workflow_id} is already completed: nothing to cancel")
    with conn.transaction():
        marked = conn.execute(
            Q["workflow_mark_cancelled"], {"id": workflow_id, "reason": "cancelled by operator"}
        ).fetchone()
        if marked is None:
            row = get(conn, workflow_id)
            state = row["state"] if row else "gone"
            raise QsupError(f"workflow {workflow_id} is already {state}: nothing to cancel")
        wake = unwind(conn, [str(workflow_id)], "cancelled: its workflow was cancelled", channel)
        if channel:
            for queue in sorted(wake):
                repo.notify(conn, channel, queue)


def prune(conn: Conn, ttl: float, limit: int = 10_000) -> int:
    """Delete workflows older than ``ttl`` seconds whose steps were all pruned."""
    return conn.execute(Q["prune_workflows"], {"ttl": ttl, "limit": limit}).rowcount


# --- reads -------------------------------------------------------------------------------


def outcome(conn: Conn, workflow_id: str, ids: list[str]) -> tuple[Any, ...] | None:
    """(state, failed task id, its name, error, {id: [state, result, error]}) or None."""
    row = conn.execute(
        Q["workflow_outcome"], {"id": workflow_id, "ids": json.dumps(ids)}
    ).fetchone()
    return tuple(row) if row else None


def get(conn: Conn, workflow_id: uuid.UUID) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["workflow_row"], {"id": workflow_id}).fetchone()


def of_task(conn: Conn, task_id: uuid.UUID) -> uuid.UUID | None:
    row = conn.execute(Q["workflow_of_task"], {"id": task_id}).fetchone()
    return row[0] if row else None


def describe(conn: Conn, workflow_id: uuid.UUID) -> dict[str, Any] | None:
    """A workflow with its steps, and its state as a reader sees it (``completed`` once every
    end step completed)."""
    row = get(conn, workflow_id)
    if row is None:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        steps = cur.execute(Q["workflow_steps"], {"id": workflow_id}).fetchall()
    state = row["state"]
    ends = [s for s in steps if s["terminal"]]
    if state == "running" and ends and all(s["state"] == "completed" for s in ends):
        state = "completed"
    return {
        "id": row["id"],
        "label": row["label"],
        "state": state,
        "date_created": row["date_created"],
        "date_done": row["date_done"] or _last_done(steps, state),
        "failed_task": row["failed_task"],
        "error": row["error_message"],
        "parent_task": row["parent_task"],
        "step_count": row["step_count"],
        "steps": steps,
    }


def _last_done(steps: list[dict[str, Any]], state: str) -> Any:
    if state != "completed":
        return None
    return max((s["date_done"] for s in steps if s["date_done"]), default=None)
