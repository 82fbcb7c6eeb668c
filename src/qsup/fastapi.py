"""FastAPI integration: ``QueuedTasks`` as a dependency whose tasks commit before the response.

    from fastapi import Depends, FastAPI
    from qsup.fastapi import QueuedTasks, QueuedTasksDep, qsup_lifespan

    app = FastAPI(lifespan=qsup_lifespan)

    @app.post("/signup")
    async def signup(email: str, tasks: QueuedTasks = Depends(QueuedTasks)):
        ref = tasks.add_task(send_welcome, email)      # returns at once
        return {"task_id": str(await ref.get_task_id())}

    @app.post("/invite")
    async def invite(email: str, tasks: QueuedTasksDep):   # the same, Annotated
        tasks.add_task(send_invite, email)

    @app.post("/report")
    async def report(tasks: QueuedTasksDep):
        wf = await tasks.add_workflow(chain(step(collect), step(render), step(deliver)))
        return {"workflow_id": str(wf.workflow_id)}     # committed: it was awaited

Every task added through ``tasks`` is committed before the response is sent: ``QueuedTasks``
depends on a generator of scope ``"function"``, whose exit code FastAPI runs when the endpoint
returns and before it sends the response (the default ``"request"`` scope runs it after).

Request-scoped values travel into the tasks as headers: ``carry_contextvars(request_id=var)``
copies ``var``'s value, when set, into every task enqueued in that context (``current_task.
headers["request_id"]`` in the worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Annotated, Any

from fastapi import Depends

from qsup.api import Queue, TaskRef, default_queue
from qsup.middleware import Task, add_middleware
from qsup.workflow import Node
from qsup.workflow_ref import WorkflowRef


async def _committed_on_return() -> AsyncIterator[list[TaskRef]]:
    """The refs a request adds; awaited when the endpoint returns (errors propagate)."""
    refs: list[TaskRef] = []
    yield refs
    await asyncio.gather(*(ref.get_task_id() for ref in refs))


class QueuedTasks:
    """Collects the tasks a request adds, so they are committed before it answers.

    FastAPI builds it from the parameters below (both are dependencies, so
    ``app.dependency_overrides[default_queue]`` swaps the queue); outside FastAPI,
    ``QueuedTasks(queue)`` works and ``await tasks.commit()`` waits for the inserts.
    """

    def __init__(
        self,
        queue: Annotated[Queue | None, Depends(default_queue)] = None,
        refs: Annotated[
            list[TaskRef] | None, Depends(_committed_on_return, scope="function")
        ] = None,
    ) -> None:
        self.queue = queue or default_queue()
        self.refs: list[TaskRef] = [] if refs is None else refs

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskRef:
        """Enqueue in the background; ``await ref.get_task_id()`` waits for the commit.
        ``connection=conn`` makes the insert part of the caller's transaction instead."""
        ref = self.queue.add_task(fn, *args, **kwargs)
        self.refs.append(ref)
        return ref

    async def add_workflow(self, workflow: Node, **options: Any) -> WorkflowRef:
        """Enqueue a workflow (``step``/``chain``/``group``) in one transaction, committed when
        this returns; ``connection=`` (an AsyncConnection) and ``unique_key=`` as in
        :meth:`Queue.add_workflow_async`. Awaited rather than sent in the background: its
        steps are many rows written together, not one insert to batch with others."""
        return await self.queue.add_workflow_async(workflow, **options)

    async def commit(self) -> None:
        """Wait until every task added so far is committed (errors propagate)."""
        await asyncio.gather(*(ref.get_task_id() for ref in self.refs))


QueuedTasksDep = Annotated[QueuedTasks, Depends(QueuedTasks)]


async def queued_tasks(tasks: QueuedTasksDep) -> QueuedTasks:
    """The former spelling, ``Depends(queued_tasks)``; same guarantee as ``QueuedTasks``."""
    return tasks


@asynccontextmanager
async def qsup_lifespan(app: Any) -> AsyncIterator[None]:
    """A FastAPI lifespan that waits for background inserts and closes the default queue's pool
    at shutdown (so a new event loop, e.g. a second TestClient, starts clean)."""
    yield
    await default_queue().aclose()


class ContextHeaders:
    """Middleware: each enqueue copies the set context variables into the task's headers
    (a header given with ``_headers`` wins)."""

    def __init__(self, variables: dict[str, ContextVar[Any]]) -> None:
        self.variables = variables

    def on_enqueue(self, task: Task) -> None:
        for header, variable in self.variables.items():
            value = variable.get(None)
            if value is not None:
                task.headers.setdefault(header, value)


def carry_contextvars(**variables: ContextVar[Any]) -> ContextHeaders:
    """Carry request-scoped values (say, the request id that your own middleware keeps in a
    ``ContextVar``) into the headers of every task enqueued while serving that request."""
    middleware = ContextHeaders(variables)
    add_middleware(middleware)
    return middleware
