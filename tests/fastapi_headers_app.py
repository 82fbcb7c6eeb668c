"""A FastAPI app whose middleware sets a request id in a ContextVar; ``carry_contextvars``
copies it into the headers of every task the request enqueues."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from fastapi import FastAPI, Request, Response

from qsup.api import default_queue
from qsup.fastapi import QueuedTasksDep, carry_contextvars, qsup_lifespan
from tests.hooks_support import headers

request_id: ContextVar[str] = ContextVar("request_id")
carry_contextvars(request_id=request_id)
app = FastAPI(lifespan=qsup_lifespan)


@app.middleware("http")
async def set_request_id(request: Request, call_next: Callable[..., Awaitable[Response]]):
    token = request_id.set(request.headers.get("x-request-id") or uuid.uuid4().hex)
    try:
        return await call_next(request)
    finally:
        request_id.reset(token)


@app.post("/headers")
async def enqueue(tasks: QueuedTasksDep) -> dict:
    return {"task_id": str(tasks.add_task(headers, _headers={"given": 1}).task_id)}


@app.post("/elsewhere")
async def enqueue_elsewhere() -> dict:
    """Not through the dependency: every enqueue while serving the request carries it."""
    ref = await default_queue().add_task_async(headers)
    return {"task_id": str(ref.task_id)}
