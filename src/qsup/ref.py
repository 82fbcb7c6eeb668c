"""A handle on an enqueued task: its id at once, its result when it is done."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from qsup import repo
from qsup.errors import TaskFailed, TaskNotFound

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool


class Pooled(Protocol):
    """What a ref needs of its :class:`~qsup.api.Queue`: somewhere to read the outcome."""

    def pool(self) -> ConnectionPool: ...


class TaskRef:
    """A handle on an enqueued task. ``task_id`` is known at once."""

    def __init__(
        self,
        queue: Pooled,
        task_id: uuid.UUID | str,
        state: str | None = None,
        pending: asyncio.Future[tuple[uuid.UUID, str]] | None = None,
    ) -> None:
        self.queue = queue
        self._task_id = task_id
        self.initial_state = state
        self._pending = pending

    @property
    def task_id(self) -> uuid.UUID:
        """The task's id. A new task's stays text until asked for: a batch builds thousands
        of refs, and a ``uuid.UUID`` costs more to make than the rest of a row."""
        if isinstance(self._task_id, str):
            self._task_id = uuid.UUID(self._task_id)
        return self._task_id

    def __repr__(self) -> str:
        return f"TaskRef({self.task_id})"

    async def get_task_id(self) -> uuid.UUID:
        """Wait until the row is committed; returns its id (an existing task's for a
        duplicate unique key)."""
        if self._pending is not None:
            self._task_id, self.initial_state = await self._pending
            self._pending = None
        return self.task_id

    def _outcome(self) -> tuple[str, Any, str | None] | None:
        with self.queue.pool().connection() as conn:
            return repo.task_outcome(conn, self.task_id)

    def _settle(self, outcome: tuple[str, Any, str | None] | None) -> tuple[bool, Any]:
        if outcome is None:
            raise TaskNotFound(f"task {self.task_id} does not exist (pruned or never committed)")
        state, result, error = outcome
        if state == "completed":
            return True, result
        if state in ("failed", "cancelled"):
            raise TaskFailed(self.task_id, state, error)
        return False, None

    def result(self, timeout: float | None = None) -> Any:
        """Block until the task finishes: its result, or TaskFailed / TimeoutError."""
        return poll(lambda: self._settle(self._outcome()), timeout, lambda: self._late(timeout))

    async def wait_result(self, timeout: float | None = None) -> Any:
        """The async twin of :meth:`result`."""
        await self.get_task_id()

        async def check() -> tuple[bool, Any]:
            return self._settle(await asyncio.to_thread(self._outcome))

        return await poll_async(check, timeout, lambda: self._late(timeout))

    def _late(self, timeout: float | None) -> TimeoutError:
        return TimeoutError(f"task {self.task_id} did not finish within {timeout} s")


def poll(
    check: Callable[[], tuple[bool, Any]],
    timeout: float | None,
    late: Callable[[], Exception],
) -> Any:
    """Call ``check`` with a growing pause until it says done; its value, or ``late()``
    raised once the next pause would pass the deadline."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for pause in _backoff():
        done, value = check()
        if done:
            return value
        if deadline is not None and time.monotonic() + pause > deadline:
            raise late()
        time.sleep(pause)
    raise AssertionError("unreachable")


async def poll_async(
    check: Callable[[], Awaitable[tuple[bool, Any]]],
    timeout: float | None,
    late: Callable[[], Exception],
) -> Any:
    """The async twin of :func:`poll`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for pause in _backoff():
        done, value = await check()
        if done:
            return value
        if deadline is not None and time.monotonic() + pause > deadline:
            raise late()
        await asyncio.sleep(pause)
    raise AssertionError("unreachable")


def _backoff(first: float = 0.005, factor: float = 1.5, cap: float = 0.5) -> Iterable[float]:
    pause = first
    while True:
        yield pause
        pause = min(cap, pause * factor)
