"""``qsup.django.TaskBackend``: django.tasks' backend that enqueues qsup tasks (SPEC §17).

Rows are written and read on Django's own connection to the ``database`` alias (OPTIONS,
default ``"default"``), whose PostgreSQL holds the qsup tables. Inside ``transaction.atomic()``
on that alias the insert joins the caller's transaction (in a savepoint: a refused insert leaves
it usable), and servers wake when it commits. Inside an atomic block of another alias only, the
insert waits for it to commit (``on_commit``): no task runs before its data exists."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connections, transaction
from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from qsup import repo
from qsup.api import Queue
from qsup.django import results
from qsup.django.task import QsupTask, new_result
from qsup.errors import ConfigError, TaskDefinitionError
from qsup.settings import load_config
from qsup.sql import queries
from qsup.task_options import TaskOptions

UNDEFINED_TABLE = "42P01"


class TaskBackend(BaseTaskBackend):
    """``TASKS = {"default": {"BACKEND": "qsup.django.TaskBackend", "OPTIONS": {...}}}``.
    OPTIONS: ``database`` (the alias), ``timeout`` (seconds, per task), and any qsup setting
    (``max_retries``, ``max_args_bytes``, ...) over the environment and ``qsup.toml``."""

    task_class = QsupTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True  # Django's -100..100 is qsup's priority: higher runs first

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        self.database: str = options.pop("database", DEFAULT_DB_ALIAS)
        self.timeout: float | None = options.pop("timeout", None)
        try:
            config = load_config(options)
        except KeyError as exc:
            raise InvalidTaskBackend(f"TASKS[{alias!r}]: unknown qsup setting {exc}") from None
        except ConfigError as exc:
            raise InvalidTaskBackend(f"TASKS[{alias!r}]: {exc}") from None
        self.rows = Queue(config=config)  # checks and encodes rows; never connects

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if not isinstance(task, QsupTask):  # a worker could not run it
            raise InvalidTask(
                f"{task.module_path} is another backend's task: declare it with"
                f" @task(backend={self.alias!r}) to run it under qsup"
            )

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        new = self.rows.build(task, tuple(args), dict(kwargs), self._options(task, args, kwargs))
        result = new_result(task, new.id, args, kwargs)

        def insert() -> None:
            task_id = _insert(self.database, new, self.rows.config.wake_channel)
            object.__setattr__(result, "id", task_id)  # a unique key's holder, maybe
            object.__setattr__(result, "enqueued_at", timezone.now())
            task_enqueued.send(type(self), task_result=result)

        _after_other_commits(self.database, insert)
        return result

    def _options(self, task: Task, args: Any, kwargs: Any) -> TaskOptions:
        eta = task.run_after
        if eta is not None and timezone.is_naive(eta):  # USE_TZ = False: local time
            eta = timezone.make_aware(eta)
        return TaskOptions(
            queue=task.queue_name,
            priority=task.priority,
            eta=eta,
            max_retries=getattr(task, "max_retries", None),
            timeout=_first(getattr(task, "timeout", None), self.timeout),
            unique_key=_key(getattr(task, "unique_key", None), args, kwargs),
            concurrency_key=_key(getattr(task, "concurrency_key", None), args, kwargs),
        )

    def get_result(self, result_id: str) -> TaskResult:
        try:
            task_id = str(uuid.UUID(str(result_id)))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        with connections[self.database].cursor() as cursor:
            cursor.execute(queries()["django_result"], {"id": task_id})
            row = cursor.fetchone()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        return results.task_result(self.alias, task_id, row)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _key(key: Any, args: Any, kwargs: Any) -> str | None:
    return key(*args, **kwargs) if callable(key) else key  # type: ignore[no-any-return]


def _after_other_commits(alias: str, insert: Callable[[], None]) -> None:
    """Insert now (in the alias's own transaction, if any), or once every other alias's
    atomic block has committed: each on_commit hands over to the next one still open."""
    if not connections[alias].in_atomic_block:
        for other in connections.all(initialized_only=True):
            if other.alias != alias and other.in_atomic_block:
                transaction.on_commit(lambda: _after_other_commits(alias, insert), other.alias)
                return
    insert()


class _Statements:
    """Django's cursor seen as what :func:`qsup.repo.run_steps` drives (psycopg 3 or 2)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, query: str, params: dict[str, Any]) -> Any:
        self.cursor.execute(query, params)
        return self.cursor


def _sqlstate(exc: BaseException | None) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)  # psycopg 3 or 2


def _insert(alias: str, new: repo.NewTask, channel: str | None) -> str:
    """Insert in a savepoint of the caller's transaction, else on its own;
    returns the task's id (that of the unfinished task holding its unique key, if one does)."""
    # a savepoint in the caller's transaction; else autocommit, as qsup's own enqueue (each
    # statement stands alone): BEGIN and COMMIT around it took 2 more round trips
    joined = (
        transaction.atomic(using=alias) if connections[alias].in_atomic_block else nullcontext()
    )
    try:
        with joined, connections[alias].cursor() as cursor:
            steps = repo.insert_or_find(new, channel)
            inserted = repo.run_steps(cast(repo.Conn, _Statements(cursor)), steps)
    except ProgrammingError as exc:
        if _sqlstate(exc.__cause__) != UNDEFINED_TABLE:
            raise
        raise ImproperlyConfigured(
            f"the qsup tables are not in database {alias!r}: run `manage.py qsup db migrate`"
            " (qsup serve does it too when it starts)"
        ) from exc
    if inserted is None:
        raise TaskDefinitionError(f"unique key {new.unique_key!r} keeps changing hands; try again")
    return str(inserted[0])
