"""Mutations: retry, cancel, clear, schedule pause/resume/run, queue pause/resume. Bearer token
required.

With no ``admin_token`` configured every mutation is refused (403); a missing or wrong token is
401. The token is compared in constant time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from qsup import admin, flow, flow_store, log, probes
from qsup.errors import ConfigError, QsupError, TaskNotFound
from qsup.http import store
from qsup.http.auth import authorize
from qsup.http.backend import Backend
from qsup.http.common import JSON, bad, json_body, typed_task_id
from qsup.states import STATES

STACK_WAIT = 2.0  # seconds to wait for the worker's answer


def _refused(exc: Exception) -> HTTPException:
    """404 for what does not exist, 400 for bad input, 409 for a state that forbids it."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, TaskNotFound | LookupError) or "no such schedule" in message:
        return HTTPException(404, message)
    if isinstance(exc, ConfigError | ValueError):
        return HTTPException(400, message)
    return HTTPException(409, message)


@contextmanager
def _existing_task(request: Request) -> Iterator[tuple[Backend, Any, uuid.UUID]]:
    """Authorize, resolve the path's task id, and yield a connection once the task exists."""
    backend = authorize(request)
    with backend.connection() as conn:
        task_id = typed_task_id(conn, request)
        if not store.task_exists(conn, task_id):
            raise HTTPException(404, f"no task {task_id}")
        yield backend, conn, task_id


def retry_task(request: Request) -> Response:
    with _existing_task(request) as (backend, conn, task_id):
        count = len(admin.retry_tasks(conn, [task_id], channel=backend.config.wake_channel))
    if not count:
        raise HTTPException(409, f"task {task_id} is not failed or cancelled")
    return JSON({"retried": count, "id": task_id})


def task_stack(request: Request) -> Response:
    """The live stack of the worker running the task (409: not running; 504: no answer)."""
    with _existing_task(request) as (backend, conn, task_id):
        try:
            row = probes.inspect(conn, task_id, backend.config.wake_channel, wait=STACK_WAIT)
        except probes.TaskNotRunning as exc:
            raise HTTPException(409, str(exc)) from None
    if row is None:
        raise HTTPException(504, f"the server of task {task_id} did not answer in {STACK_WAIT:g} s")
    return JSON({"id": task_id, "stack": row["stack"], **probes.running_figures(row)})


def cancel_task(request: Request) -> Response:
    with _existing_task(request) as (backend, conn, task_id):
        try:
            outcome = admin.cancel_task(conn, task_id, backend.config.wake_channel)
        except (QsupError, LookupError, ValueError) as exc:
            raise _refused(exc) from None
    if outcome == "cancelled":  # not started: no server hears of it (a running one's logs it)
        log.event("cancelled", str(task_id)).info("task cancelled before it started (HTTP)")
    return JSON({"id": task_id, "outcome": outcome})


async def clear_tasks(request: Request) -> Response:
    backend = authorize(request)
    body = await json_body(request)
    states = body.get("states")
    queue = body.get("queue")
    if states is not None and (
        not isinstance(states, list) or not states or not all(s in STATES for s in states)
    ):
        raise bad(f"states: expected a non-empty list drawn from {', '.join(STATES)}")
    if queue is not None and (not isinstance(queue, str) or "\x00" in queue):
        raise bad("queue: expected a string")

    def run() -> int:
        with backend.connection() as conn:
            try:
                cleared: int = admin.clear_tasks(conn, states=states, queue=queue)
            except (QsupError, ValueError) as exc:
                raise _refused(exc) from None
            return cleared

    from starlette.concurrency import run_in_threadpool

    return JSON({"cleared": await run_in_threadpool(run)})


def _schedule_action(request: Request, action: str) -> Response:
    backend = authorize(request)
    name = request.path_params["name"]
    with backend.connection() as conn:
        try:
            if action == "run":
                task_id = admin.run_schedule_now(
                    conn, backend.config, name, backend.config.wake_channel
                )
                return JSON({"schedule": name, "task_id": task_id})
            spec, _ = admin.find_schedule(conn, backend.config, name)  # unknown: 404
            admin.set_schedule_paused(conn, spec, action == "pause")
        except (QsupError, LookupError, ValueError) as exc:
            raise _refused(exc) from None
    return JSON({"schedule": name, "paused": action == "pause"})


def pause_schedule(request: Request) -> Response:
    return _schedule_action(request, "pause")


def resume_schedule(request: Request) -> Response:
    return _schedule_action(request, "resume")


def run_schedule(request: Request) -> Response:
    return _schedule_action(request, "run")


def _queue_action(request: Request, paused: bool) -> Response:
    backend = authorize(request)
    name = request.path_params["name"]
    if not flow.QUEUE_NAME.match(name):
        raise bad(f"queue name {name!r} is invalid")
    with backend.connection() as conn:
        flow_store.set_paused(conn, name, paused, backend.config.wake_channel)
    return JSON({"queue": name, "paused": paused})


def pause_queue(request: Request) -> Response:
    return _queue_action(request, True)


def resume_queue(request: Request) -> Response:
    return _queue_action(request, False)
