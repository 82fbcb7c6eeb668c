"""The enqueue side: :class:`Queue` and the :func:`task` decorator (refs: :mod:`qsup.ref`)."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import psycopg
from uuid_utils import uuid7

from qsup import middleware, repo
from qsup.binding import check_call
from qsup.db.connect import (
    connect,
    describe_connection,
    lost,
    prepare_threshold,
    resolve_url,
)
from qsup.db.migrate import migrate
from qsup.encoding import encode_arguments
from qsup.errors import TaskDefinitionError
from qsup.flow import concurrency_key
from qsup.keys import checked_key
from qsup.ref import TaskRef
from qsup.settings import Config, load_config
from qsup.task_options import NO_OPTIONS, Settled, TaskOptions, settle, when_and_links
from qsup.wakeups import Waker
from qsup.workflow_ref import AddsWorkflows

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

FINISHED = ("completed", "failed", "cancelled")
# A unique key lives in a btree index: 500 characters stay under its 2,704-byte entry limit.
MAX_UNIQUE_KEY = 500
_POOL_OPTIONS: dict[str, Any] = {
    "min_size": 1,
    "max_size": 4,
    "open": False,
}


class TaskFunction:
    """What ``@task`` returns: the function, callable as before, plus ``.add_task``."""

    def __init__(self, fn: Callable[..., Any], defaults: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.__qsup_task__ = fn
        self.defaults = defaults
        _REGISTERED[f"{fn.__module__}:{fn.__qualname__}"] = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__qsup_task__(*args, **kwargs)

    def add_task(self, *args: Any, **kwargs: Any) -> TaskRef:
        return default_queue().add_task(self, *args, **kwargs)

    async def add_task_async(self, *args: Any, **kwargs: Any) -> TaskRef:
        return await default_queue().add_task_async(self, *args, **kwargs)


_REGISTERED: dict[str, TaskFunction] = {}


def registered_tasks() -> dict[str, TaskFunction]:
    """Tasks declared with ``@task`` in the modules imported so far, by path. The HTTP API
    enqueues only these, never arbitrary import paths."""
    return dict(_REGISTERED)


def task(
    fn: Callable[..., Any] | None = None,
    *,
    queue: str | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    priority: int | None = None,
    concurrency_key: Callable[..., str | None] | None = None,
) -> Any:
    """Give a task function defaults: ``@task(queue="mail", retries=5, timeout=60)``;
    ``concurrency_key`` makes a task's key of its arguments (see ``[limits]``)."""
    defaults = {"queue": queue, "max_retries": retries, "timeout": timeout, "priority": priority,
                "concurrency_key": concurrency_key}  # fmt: skip

    def wrap(f: Callable[..., Any]) -> TaskFunction:
        return TaskFunction(f, {k: v for k, v in defaults.items() if v is not None})

    return wrap(fn) if fn is not None else wrap


class Queue(AddsWorkflows):
    """Enqueue tasks and follow them. Resolves the database like the CLI does. Workflows:
    :meth:`add_workflow` (:mod:`qsup.workflow_ref`)."""

    def __init__(self, database_url: str | None = None, *, config: Config | None = None) -> None:
        self.config = config or load_config({"database_url": database_url})
        self._url: str | None = None
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._plain: dict[Callable[..., Any], Settled] = {}
        # background inserts of add_task() called in async code
        self._pending: set[asyncio.Future[tuple[uuid.UUID, str]]] = set()
        # wake-ups after the pool's commits, coalesced (the caller's transactions notify inside)
        channel = self.config.wake_channel
        self._waker = Waker(channel, lambda: self.pool().connection()) if channel else None

    # --- connections ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        with self._lock:
            if self._url is None:
                url = resolve_url(self.config)
                with connect(url) as conn:
                    migrate(conn)
                self._url = url
            return self._url

    def pool(self) -> ConnectionPool:
        url = self.url
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool  # on first use: keeps imports light

                kwargs = {"autocommit": True, "prepare_threshold": prepare_threshold(self.config)}
                pool = ConnectionPool(url, name="qsup", kwargs=kwargs, **_POOL_OPTIONS)
                pool.open(wait=True, timeout=10)
                self._pool = pool
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            if self._waker is not None:
                self._waker.close()
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        """Wait for the background inserts, then close the pool."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await asyncio.to_thread(self.close)

    # --- building rows --------------------------------------------------------------------

    def build(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions | None = None,
        *,
        input_first: bool = False,
    ) -> repo.NewTask:
        """Check and encode one call into a row; every refusal is a TaskDefinitionError.
        ``options`` given: ``kwargs`` are all the function's, none is taken as an option.
        ``input_first``: a workflow step, given what it follows' result before ``args``."""
        if options is None and kwargs and any(key[:1] == "_" for key in kwargs):
            kwargs = dict(kwargs)
            options = TaskOptions.pop_from(kwargs)
        options = options or NO_OPTIONS
        if options is not NO_OPTIONS:
            settled = settle(fn, options, self.config.max_retries)
        elif fn in self._plain:  # the common case: a function's settings are checked once
            settled = self._plain[fn]
        else:
            settled = self._plain[fn] = settle(fn, options, self.config.max_retries)
        name, queue, priority, max_retries, timeout = settled
        check_call(fn, name, args, kwargs, input_first)
        args_json, kwargs_json = encode_arguments(args, kwargs, self.config.max_args_bytes)
        parent, depends_on = (None, ()) if options is NO_OPTIONS else when_and_links(options)
        task_id = str(uuid7())  # time-ordered: claims and completions touch neighbouring pages
        headers = middleware.on_enqueue(self.config, task_id, name, queue, args, kwargs, options)
        return repo.NewTask(
            task_id,
            name,
            args_json,
            kwargs_json,
            queue,
            priority,
            float(options.delay),
            options.eta,
            max_retries,
            timeout,
            checked_key("_unique_key", options.unique_key, MAX_UNIQUE_KEY),
            parent,
            depends_on,
            concurrency_key=concurrency_key(
                options.concurrency_key,
                getattr(fn, "defaults", {}).get("concurrency_key"),
                args,
                kwargs,
            ),  # fmt: skip
            headers=headers,
        )

    # --- enqueue --------------------------------------------------------------------------

    def add_task(
        self, fn: Callable[..., Any], *args: Any, connection: Any = None, **kwargs: Any
    ) -> TaskRef:
        """Enqueue ``fn(*args, **kwargs)``. Options are ``_queue``, ``_priority``, ``_delay``,
        ``_eta``, ``_max_retries``, ``_timeout``, ``_unique_key``, ``_parent``, ``_depends_on``,
        ``_headers`` (a dict the task reads as ``current_task.headers``), ``_concurrency_key``.

        With ``connection`` (a psycopg connection) the insert joins the caller's transaction.
        Called inside a running event loop, it returns at once and inserts in the background;
        ``await ref.get_task_id()`` waits for the commit.
        """
        new = self.build(fn, args, kwargs)
        if connection is not None:
            return TaskRef(self, *self._insert(connection, new))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return TaskRef(self, *self._insert_pooled(new))
        pending = loop.run_in_executor(None, self._insert_pooled, new)
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)
        return TaskRef(self, new.id, None, pending)

    async def add_task_async(
        self, fn: Callable[..., Any], *args: Any, connection: Any = None, **kwargs: Any
    ) -> TaskRef:
        """Like :meth:`add_task`, awaited: the row is committed (or in ``connection``'s
        transaction, a psycopg ``AsyncConnection``) when it returns."""
        new = self.build(fn, args, kwargs)
        if connection is None:
            return TaskRef(self, *await asyncio.to_thread(self._insert_pooled, new))
        return TaskRef(self, *await self._insert_async(connection, new))

    def add_tasks(
        self,
        calls: Iterable[tuple[Callable[..., Any], Sequence[Any], dict[str, Any]]],
        connection: Any = None,
    ) -> list[TaskRef]:
        """Enqueue many ``(fn, args, kwargs)`` calls in one transaction (COPY when plain)."""
        rows = (self.build(fn, tuple(args), dict(kwargs or {})) for fn, args, kwargs in calls)
        if connection is not None:  # all checked before the caller's transaction is touched
            rows_list = list(rows)
            with self._unreachable(connection):
                return self._insert_many(connection, rows_list, None)
        woken: set[str] = set()
        with self._unreachable(), self.pool().connection() as conn:
            with conn.transaction():  # rows built while the COPY streams: both cores work
                refs = self._insert_many(conn, rows, woken if self._waker else None)
            if self._waker is not None and woken:
                self._waker.after_commit(conn, woken)
        return refs

    def _insert_many(
        self, conn: psycopg.Connection[Any], rows: Iterable[repo.NewTask], woken: set[str] | None
    ) -> list[TaskRef]:
        """Without ``woken``, the transaction notifies; else the queues to wake go there."""
        refs: list[TaskRef | None] = []  # in call order; None until a later INSERT fills it
        later: list[tuple[int, repo.NewTask]] = []  # unique keys, dependencies, delays
        queues: set[str] = woken if woken is not None else set()

        def plain() -> Iterator[repo.NewTask]:
            for row in rows:
                if row.copyable:
                    queues.add(row.queue)
                    refs.append(TaskRef(self, row.id, "enqueued"))
                    yield row
                else:
                    later.append((len(refs), row))
                    refs.append(None)

        repo.copy_tasks(conn, plain())
        if self.config.wake_channel and woken is None:
            for queue in sorted(queues):
                repo.notify(conn, self.config.wake_channel, queue)
        for index, row in later:
            task_id, state = self._insert(conn, row, notify=woken is None)
            refs[index] = TaskRef(self, task_id, state)
            if state == "enqueued":
                queues.add(row.queue)
        return cast(list[TaskRef], refs)

    # Async code uses the same thread-safe pool from a worker thread: an AsyncConnectionPool
    # belongs to one event loop, and an app may run several (asyncio.run per script step, a loop
    # per test, TestClient per block), each ending with the pool's tasks stuck mid-connect.
    def _insert_pooled(self, new: repo.NewTask) -> tuple[uuid.UUID, str]:
        with self._unreachable(), self.pool().connection() as conn:  # autocommit
            inserted = self._insert(conn, new, notify=self._waker is None)
            if self._waker is not None and inserted[1] == "enqueued":
                self._waker.after_commit(conn, (new.queue,))
            return inserted

    def _insert(
        self, conn: psycopg.Connection[Any], new: repo.NewTask, notify: bool = True
    ) -> tuple[uuid.UUID, str]:
        """``notify``: the statement wakes servers (on its transaction's commit)."""
        channel = self.config.wake_channel if notify else None
        with self._unreachable(conn), self._insert_errors(new):
            inserted = repo.run_steps(conn, repo.insert_or_find(new, channel))
        return _inserted(new, inserted)

    async def _insert_async(
        self, connection: psycopg.AsyncConnection[Any], new: repo.NewTask
    ) -> tuple[uuid.UUID, str]:
        steps = repo.insert_or_find(new, self.config.wake_channel)
        with self._unreachable(connection), self._insert_errors(new):
            inserted = await repo.run_steps_async(connection, steps)
        return _inserted(new, inserted)

    @contextmanager
    def _insert_errors(self, new: repo.NewTask) -> Iterator[None]:
        try:
            yield
        except psycopg.errors.NotNullViolation:
            raise TaskDefinitionError(_missing_dependency(new)) from None

    @contextmanager
    def _unreachable(self, connection: Any = None) -> Iterator[None]:
        """Every enqueue path, sync or async, single or batch, the pool's connection or the
        caller's: a lost or refused connection (AdminShutdown, a pool timeout, ...) is a
        DatabaseUnreachable naming the host."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise lost(describe_connection(connection, self._url), exc) from None


def _inserted(new: repo.NewTask, inserted: tuple[uuid.UUID, str] | None) -> tuple[uuid.UUID, str]:
    if inserted is None:
        raise TaskDefinitionError(f"unique key {new.unique_key!r} keeps changing hands; try again")
    return inserted


def _missing_dependency(new: repo.NewTask) -> str:
    ids = ", ".join(str(d) for d in new.depends_on)
    return f"a dependency of the task does not exist (depends on: {ids})"


_default_queue: Queue | None = None


def default_queue() -> Queue:
    """The process-wide Queue used by ``@task`` functions' ``.add_task``."""
    global _default_queue
    if _default_queue is None:
        _default_queue = Queue()
    return _default_queue
