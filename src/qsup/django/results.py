"""A qsup task row, with its attempts' log rows, as django.tasks' ``TaskResult``.

States: waiting and enqueued (also between retries) are READY, picked_up is RUNNING once this
attempt's worker said it started (READY before), running is RUNNING, completed SUCCESSFUL;
failed and cancelled are FAILED, a cancelled or quarantined task with an error that says so."""

from __future__ import annotations

import builtins
import json
import re
from datetime import UTC, datetime
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils.module_loading import import_string

from qsup.django import errors
from qsup.django.task import ERROR_LOG, WORKER_LOG

STATUS = {
    "waiting": TaskResultStatus.READY,
    "enqueued": TaskResultStatus.READY,
    "picked_up": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "completed": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
}
# what qsup's own error rows name (settle.py) and the class behind each name
QSUP_ERRORS = {
    "TaskTimeout": "qsup.errors.TaskTimeout",
    "TaskDefinitionError": "qsup.errors.TaskDefinitionError",
    "Retry": "qsup.errors.Retry",
    "WorkerDied": "qsup.django.errors.WorkerDied",
    "MemoryLimitExceeded": "qsup.django.errors.MemoryLimitExceeded",
}
_ATTEMPT = re.compile(r"attempt (\d+)")
_ERROR_NAME = re.compile(r"^([A-Za-z_][\w.]*): ", re.MULTILINE)


def task_result(alias: str, task_id: str, row: tuple[Any, ...]) -> TaskResult:
    """The ``django_result`` query's row (see django.sql) as a TaskResult of backend ``alias``."""
    name, state, queue, priority, args, kwargs, enqueued, started, done, attempts = row[:10]
    value, error_message, log_text = row[10:]
    logs = [(kind, message, _time(at)) for kind, message, at in json.loads(log_text)]
    starts = [(worker, at) for kind, worker, at in logs if kind == WORKER_LOG]
    status = STATUS[state]
    if state == "picked_up" and len(starts) >= attempts:
        status = TaskResultStatus.RUNNING
    result = TaskResult(
        task=_task(name, task_id, alias, queue, priority),
        id=task_id,
        status=status,
        enqueued_at=enqueued,
        started_at=starts[0][1] if starts else started,
        finished_at=done,
        last_attempted_at=starts[-1][1] if starts else started,
        args=json.loads(args),
        kwargs=json.loads(kwargs),
        backend=alias,
        errors=attempt_errors(logs, state, error_message),
        worker_ids=[worker for worker, _ in starts],
    )
    if state == "completed":
        object.__setattr__(result, "_return_value", json.loads(value))
    return result


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _task(name: str, task_id: str, alias: str, queue: str, priority: int) -> Task:
    """The declared task the row names, with the backend, queue and priority it was enqueued
    with (``refresh()`` asks that backend)."""
    try:
        task = import_string(name.replace(":", "."))
    except ImportError:
        raise TaskResultDoesNotExist(f"task {task_id}: {name} cannot be imported") from None
    if not isinstance(task, Task):
        raise TaskResultDoesNotExist(f"task {task_id} is a qsup task ({name}), not a Django one")
    try:
        return task.using(backend=alias, queue_name=queue, priority=priority)
    except InvalidTask:  # another backend's queue or a priority beyond Django's: as declared
        return task


def attempt_errors(
    logs: list[tuple[str, str, datetime]], state: str, error_message: str | None
) -> list[TaskError]:
    """One error per failed attempt, in order: what the task raised (class path and traceback,
    recorded by its worker), else what qsup recorded (the worker was killed, timed out, ...);
    then a cancellation, or the final failure when no attempt recorded one."""
    raised: dict[int, TaskError] = {}
    for kind, message, _ in logs:
        if kind == ERROR_LOG:
            record = json.loads(message)
            raised[record["attempt"]] = TaskError(
                exception_class_path=record["class"], traceback=record["traceback"]
            )
    found = []
    for kind, message, _ in logs:
        if kind == "error":
            attempt = _ATTEMPT.match(message)
            own = raised.pop(int(attempt.group(1)), None) if attempt else None
            found.append(own or qsup_error(message))
    if state == "cancelled":
        found.append(_error(errors.TaskCancelled, error_message or "cancelled"))
    elif state == "failed" and not found:
        found.append(qsup_error(error_message or "failed"))
    return found


def qsup_error(message: str) -> TaskError:
    """An error row qsup wrote (``attempt 2/4 failed, retry in 2.0 s: TaskTimeout: ...``) as a
    TaskError naming the exception's class."""
    if "; quarantined" in message or message.startswith("quarantined"):
        return _error(errors.TaskQuarantined, message)
    detail = message.partition(" failed")[2].partition(": ")[2] or message
    names = _ERROR_NAME.findall(detail)
    name = names[-1] if names else ""
    if name in QSUP_ERRORS:
        path = QSUP_ERRORS[name]
    elif "." in name:
        path = name
    elif isinstance(getattr(builtins, name, None), type):
        path = f"builtins.{name}"
    else:
        path = QSUP_ERRORS["WorkerDied"]
    return TaskError(exception_class_path=path, traceback=message)


def _error(cls: type[Exception], message: str) -> TaskError:
    return TaskError(exception_class_path=f"{cls.__module__}.{cls.__qualname__}", traceback=message)
