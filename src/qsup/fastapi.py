"""FastAPI integration: ``QueuedTasks`` as a dependency whose tasks commit before the response.

    from fastapi import Depends, FastAPI
    from qsup.fastapi import QueuedTasks, queued_tasks

    app = FastAPI()

    @app.post("/signup")
    async def signup(email: str, tasks: QueuedTasks = Depends(queued_tasks)):
        ref = tasks.add_task(send_welcome, email)      # returns at once
        return {"task_id": str(await ref.get_task_id())}

Every task added through ``tasks`` is committed before the response is sent: the dependency
awaits the pending inserts when the endpoint returns (FastAPI runs that code before sending).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from qsup.api import Queue, TaskRef, default_queue


class QueuedTasks:
    """Collects the tasks a request adds, so they can be awaited before it answers."""

    def __init__(self, queue: Queue | None = None) -> None:
        self.queue = queue or default_queue()
        self.refs: list[TaskRef] = []

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskRef:
        """Enqueue in the background; ``await ref.get_task_id()`` waits for the commit."""
        ref = self.queue.add_task(fn, *args, **kwargs)
        self.refs.append(ref)
        return ref

    async def commit(self) -> None:
        """Wait until every task added so far is committed (errors propagate)."""
        await asyncio.gather(*(ref.get_task_id() for ref in self.refs))


async def queued_tasks() -> AsyncIterator[QueuedTasks]:
    """FastAPI dependency: ``tasks: QueuedTasks = Depends(queued_tasks)``."""
    tasks = QueuedTasks()
    yield tasks
    await tasks.commit()
