"""The task class of the qsup backend, and how a qsup worker runs one of its tasks: Django's
``TaskResult``, ``TaskContext`` and ``task_started`` / ``task_finished`` signals around the call.

Each attempt leaves two kinds of log rows that :mod:`qsup.django.results` reads back: its
worker's id when it starts, and the exception's class path and traceback when it raises (a
worker killed mid-run leaves only the supervisor's own error row)."""

from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils.module_loading import import_string

from qsup.context import current_task

WORKER_LOG = "django:worker"  # queued_task_logs.type of an attempt's start: the worker's id
ERROR_LOG = "django:error"  # and of its exception: {"attempt", "class", "traceback"}
TRACEBACK_CHARS = 60_000  # the tail: a log row keeps 65,536 characters, and must stay JSON
Key = str | Callable[..., str | None] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QsupTask(Task):
    """A Django task with qsup's options: ``@task(timeout=30, max_retries=5)`` on Django 6.1+
    (``dataclasses.replace(task, timeout=30)`` on 6.0). ``unique_key`` and ``concurrency_key``
    are text, or a function of the task's arguments that returns text or None."""

    timeout: float | None = None
    max_retries: int | None = None
    unique_key: Key = None
    concurrency_key: Key = None

    @property
    def __qsup_task__(self) -> Callable[..., Any]:
        """What a qsup worker calls: the function inside Django's task lifecycle."""
        return runner_for(self.func, self.takes_context)


@functools.cache
def runner_for(func: Callable[..., Any], takes_context: bool) -> Callable[..., Any]:
    """One wrapper per function (the enqueue side checks that a worker finds this same
    object), async for an async task, with ``func``'s name and the signature its caller sees
    (no ``context``: the runner checks arguments against it after a TypeError)."""
    wrapper = _wrapper(func)
    signature = inspect.signature(func)
    if takes_context:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    return wrapper


def _wrapper(func: Callable[..., Any]) -> Callable[..., Any]:
    path = f"{func.__module__}.{func.__qualname__}"
    if inspect.iscoroutinefunction(func):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            result = _started(import_string(path), args, kwargs)
            await task_started.asend(sender=_sender(result), task_result=result)
            try:
                value = await func(*_context(result), *args, **kwargs)
            except Exception as exc:
                _failed(result, exc)
                await task_finished.asend(sender=_sender(result), task_result=result)
                raise
            _succeeded(result, value)
            await task_finished.asend(sender=_sender(result), task_result=result)
            return value

        return functools.wraps(func)(run_async)

    def run(*args: Any, **kwargs: Any) -> Any:
        result = _started(import_string(path), args, kwargs)
        task_started.send(sender=_sender(result), task_result=result)
        try:
            value = func(*_context(result), *args, **kwargs)
        except Exception as exc:
            _failed(result, exc)
            task_finished.send(sender=_sender(result), task_result=result)  # exc_info is set
            raise
        _succeeded(result, value)
        task_finished.send(sender=_sender(result), task_result=result)
        return value

    return functools.wraps(func)(run)


def _now() -> datetime:
    return datetime.now(UTC)


def _started(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskResult:
    """This attempt's result as the worker knows it: earlier attempts' workers are not known
    here (``worker_ids`` holds "" for them; ``get_result`` has them all)."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    current_task.log(worker, type=WORKER_LOG)
    task_id, now = current_task.id, _now()
    workers = [*[""] * (current_task.attempt - 1), worker]
    result = new_result(task, str(task_id), args, kwargs, enqueued_at(task_id), workers)
    _set(result, status=TaskResultStatus.RUNNING, started_at=now, last_attempted_at=now)
    return result


def new_result(
    task: Task,
    task_id: str,
    args: Any,
    kwargs: Any,
    enqueued: datetime | None = None,
    worker_ids: list[str] | None = None,
) -> TaskResult:
    """A READY result, not started."""
    return TaskResult(
        task=task,
        id=task_id,
        status=TaskResultStatus.READY,
        enqueued_at=enqueued,
        started_at=None,
        finished_at=None,
        last_attempted_at=None,
        args=list(args),
        kwargs=dict(kwargs),
        backend=task.backend,
        errors=[],
        worker_ids=worker_ids or [],
    )


def enqueued_at(task_id: uuid.UUID) -> datetime:
    """A UUIDv7 task id starts with its enqueue time in milliseconds."""
    return datetime.fromtimestamp((task_id.int >> 80) / 1000, UTC)


def _context(result: TaskResult) -> tuple[Any, ...]:
    return (TaskContext(task_result=result),) if result.task.takes_context else ()


def _sender(result: TaskResult) -> type:
    return type(result.task.get_backend())


def _set(result: TaskResult, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(result, name, value)


def _succeeded(result: TaskResult, value: Any) -> None:
    _set(result, status=TaskResultStatus.SUCCESSFUL, finished_at=_now(), _return_value=value)


def _failed(result: TaskResult, exc: Exception) -> None:
    """Record the exception as Django does (class path and traceback), here and in the log."""
    cls = type(exc)
    error = TaskError(
        exception_class_path=f"{cls.__module__}.{cls.__qualname__}",
        traceback="".join(traceback.format_exception(exc)),
    )
    result.errors.append(error)
    _set(result, status=TaskResultStatus.FAILED, finished_at=_now())
    record = {"attempt": current_task.attempt, "class": error.exception_class_path,
              "traceback": error.traceback[-TRACEBACK_CHARS:]}  # fmt: skip
    current_task.log(json.dumps(record), type=ERROR_LOG)
