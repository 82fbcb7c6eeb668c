"""``POST /api/tasks``: enqueue a task registered with ``@task``. Bearer token required.

Only names in :func:`qsup.api.registered_tasks` (the ``@task`` functions of the modules the
server imported) are accepted: a request never makes the server import anything.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from qsup import repo
from qsup.errors import TaskDefinitionError
from qsup.http.auth import authorize
from qsup.http.common import JSON, bad, json_body
from qsup.http.routes import list_tasks

FIELDS = ("task", "args", "kwargs", "queue", "priority", "delay", "headers", "concurrency_key")
INT32 = 2**31 - 1


# Body fields passed on as they are once their JSON type is right: (field, type, expected).
TYPED = (
    ("queue", str, "a string"),
    ("headers", dict, "an object (the task reads it as current_task.headers)"),
    ("concurrency_key", str, "a string"),
)


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """The ``_``-prefixed options of ``Queue.build`` from the body, type-checked."""
    options: dict[str, Any] = {}
    for field, kind, expected in TYPED:
        value = body.get(field)
        if value is not None:
            if not isinstance(value, kind):
                raise bad(f"{field}: expected {expected}")
            options[f"_{field}"] = value
    priority = body.get("priority")
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > INT32:
            raise bad("priority: expected an integer")
        options["_priority"] = priority
    delay = body.get("delay")
    if delay is not None:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or not 0 <= delay <= 366 * 86400
        ):
            raise bad("delay: expected seconds from 0 to 31622400")
        options["_delay"] = float(delay)
    return options


async def enqueue_task(request: Request) -> Response:
    backend = authorize(request)
    body = await json_body(request)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}: expected {', '.join(FIELDS)}")
    name = body.get("task")
    if not isinstance(name, str) or not name:
        raise bad("task: expected the name of a registered task (module:function)")
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    if not isinstance(args, list):
        raise bad("args: expected a list")
    if not isinstance(kwargs, dict) or any(k.startswith("_") for k in kwargs):
        raise bad("kwargs: expected an object whose keys do not start with '_'")
    from qsup.api import Queue, registered_tasks

    fn = registered_tasks().get(name)
    if fn is None:
        raise HTTPException(
            404,
            f"no registered task {name!r}: only @task functions of the"
            " modules the server imports can be enqueued",
        )
    queue = Queue(config=backend.config)
    try:
        new = queue.build(fn, tuple(args), {**kwargs, **_options(body)})
    except TaskDefinitionError as exc:
        raise bad(str(exc)) from None

    def insert() -> tuple[Any, str] | None:
        with backend.connection() as conn:
            return repo.insert_task(conn, new, backend.config.wake_channel)

    inserted = await run_in_threadpool(insert)
    assert inserted is not None  # no unique key: the insert cannot be skipped
    task_id, state = inserted
    return JSON(
        {"id": task_id, "name": new.name, "queue": new.queue, "state": state}, status_code=201
    )


async def tasks_endpoint(request: Request) -> Response:
    """``/api/tasks``: GET lists (a read), POST enqueues (a mutation)."""
    if request.method == "POST":
        return await enqueue_task(request)
    return await run_in_threadpool(list_tasks, request)
