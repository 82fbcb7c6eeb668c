"""Enqueueing a workflow (``Queue.add_workflow``) and the handle it returns."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from qsup import workflow_store
from qsup.errors import TaskFailed, TaskNotFound
from qsup.ref import poll, poll_async
from qsup.workflow import Builder, NewWorkflow, Node, compile_workflow, input_ids
from qsup.workflow_values import evaluate

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from qsup.settings import Config


class Queue(Builder, Protocol):
    """What this module needs of a :class:`~qsup.api.Queue` (which imports this module)."""

    config: Config

    def pool(self) -> ConnectionPool: ...

    def _unreachable(self, connection: Any = None) -> AbstractContextManager[None]: ...


class WorkflowRef:
    """A handle on an enqueued workflow: ``workflow_id`` and ``task_ids`` (its steps, in the
    order they appear) at once, the last step's result when it is done."""

    def __init__(
        self, queue: Queue, workflow_id: str, task_ids: list[str], output: str | None
    ) -> None:
        self.queue = queue
        self.workflow_id = uuid.UUID(workflow_id)
        self.task_ids = [uuid.UUID(i) for i in task_ids]
        self._output = json.loads(output) if output is not None else None

    def __repr__(self) -> str:
        return f"WorkflowRef({self.workflow_id}, {len(self.task_ids)} steps)"

    def _read(self) -> tuple[Any, ...] | None:
        with self.queue.pool().connection() as conn:
            if self._output is None:  # found by its unique key: read what its result is
                row = workflow_store.get(conn, self.workflow_id)
                self._output = row["output"] if row else None
            ids = sorted(set(input_ids(self._output))) if self._output is not None else []
            return workflow_store.outcome(conn, str(self.workflow_id), ids)

    def _settle(self, found: tuple[Any, ...] | None) -> tuple[bool, Any]:
        if found is None:
            raise TaskNotFound(f"workflow {self.workflow_id} does not exist")
        state, failed_task, failed_name, error, tasks = found
        if state != "running":
            where = f"step {failed_name}" if failed_name else "a step"
            raise TaskFailed(failed_task, state, f"workflow {self.workflow_id}: {where}: {error}")
        tasks = tasks or {}
        if all(tasks.get(i, [None])[0] == "completed" for i in input_ids(self._output)):
            return True, evaluate(self._output, tasks)
        return False, None

    def result(self, timeout: float | None = None) -> Any:
        """Block until the workflow ends: its last step's result (a group's: the list of its
        members' results), or TaskFailed naming the failed step, or TimeoutError."""
        return poll(lambda: self._settle(self._read()), timeout, lambda: self._late(timeout))

    async def wait_result(self, timeout: float | None = None) -> Any:
        """The async twin of :meth:`result`."""

        async def check() -> tuple[bool, Any]:
            return self._settle(await asyncio.to_thread(self._read))

        return await poll_async(check, timeout, lambda: self._late(timeout))

    def _late(self, timeout: float | None) -> TimeoutError:
        return TimeoutError(f"workflow {self.workflow_id} did not end within {timeout} s")


class AddsWorkflows:
    """``Queue.add_workflow`` and ``add_workflow_async`` (a base of :class:`~qsup.api.Queue`)."""

    def add_workflow(
        self: Queue, workflow: Node, *, connection: Any = None, unique_key: str | None = None
    ) -> WorkflowRef:
        """Enqueue a workflow (``step``/``chain``/``group``) in one transaction, joining
        ``connection``'s when given. With ``unique_key``, while a workflow holding it is
        unfinished, returns that one instead."""
        return _add(self, compile_for(self, workflow, unique_key), connection)

    async def add_workflow_async(
        self: Queue, workflow: Node, *, connection: Any = None, unique_key: str | None = None
    ) -> WorkflowRef:
        """Like :meth:`add_workflow`, awaited (``connection``: a psycopg AsyncConnection)."""
        new = compile_for(self, workflow, unique_key)  # every check before any connection
        if connection is None:
            return await asyncio.to_thread(_add, self, new, None)
        with self._unreachable(connection):
            async with connection.transaction() if connection.autocommit else nullcontext():
                found = await workflow_store.insert_async(connection, new, self.config.wake_channel)
        return _ref(self, new, found)


def compile_for(
    queue: Queue, workflow: Node, unique_key: str | None, parent: str | None = None
) -> NewWorkflow:
    return compile_workflow(
        queue,
        workflow,
        max_steps=queue.config.max_workflow_steps,
        parent=parent,
        unique_key=unique_key,
    )


def _ref(queue: Queue, new: NewWorkflow, found: tuple[str, list[str]]) -> WorkflowRef:
    workflow_id, task_ids = found
    return WorkflowRef(queue, workflow_id, task_ids, new.output if workflow_id == new.id else None)


def _add(queue: Queue, new: NewWorkflow, connection: Any) -> WorkflowRef:
    channel = queue.config.wake_channel
    with _connection(queue, connection) as conn, _atomic(conn):
        return _ref(queue, new, workflow_store.insert(conn, new, channel))


def _atomic(conn: Any) -> AbstractContextManager[Any]:
    """The statements in one transaction: a connection in autocommit gets one (a savepoint
    inside the caller's ``with conn.transaction()``); any other is in the caller's already
    (psycopg begins it), and commits or rolls back with it."""
    return conn.transaction() if conn.autocommit else nullcontext()


@contextmanager
def _connection(queue: Queue, connection: Any) -> Iterator[Any]:
    """The caller's connection, or one of the queue's pool; a lost one is
    DatabaseUnreachable naming the host."""
    with queue._unreachable(connection):
        if connection is not None:
            yield connection
        else:
            with queue.pool().connection() as conn:
                yield conn
