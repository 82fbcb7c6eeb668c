"""The ``_``-prefixed options of ``Queue.add_task`` (:class:`TaskOptions`) and their checks:
each refusal is a :class:`~qsup.errors.TaskDefinitionError` naming the option."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qsup.encoding import task_path
from qsup.errors import TaskDefinitionError
from qsup.flow import QUEUE_NAME
from qsup.ref import TaskRef

INT32 = 2**31 - 1
Settled = tuple[str, str, int, int, float | None]  # name, queue, priority, retries, timeout


@dataclass(frozen=True)
class TaskOptions:
    """Per-enqueue options: the ``_``-prefixed keyword arguments of ``add_task``."""

    queue: str | None = None
    priority: int | None = None
    delay: float = 0.0
    eta: datetime | None = None
    max_retries: int | None = None
    timeout: float | None = None
    unique_key: str | None = None
    parent: Any = None
    depends_on: Sequence[Any] = ()
    concurrency_key: str | None = None
    headers: Mapping[str, Any] | None = None

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any]) -> TaskOptions:
        """Take the options out of a call's keyword arguments, refusing unknown ones."""
        options: dict[str, Any] = {}
        for key in [k for k in kwargs if k.startswith("_")]:
            name = key[1:]
            if name not in cls.__dataclass_fields__:
                known = ", ".join(f"_{n}" for n in cls.__dataclass_fields__)
                raise TaskDefinitionError(f"unknown task option {key!r} (known: {known})")
            options[name] = kwargs.pop(key)
        return cls(**options)


NO_OPTIONS = TaskOptions()


def settle(fn: Callable[..., Any], options: TaskOptions, max_retries: int) -> Settled:
    """Name, queue, priority, retries and timeout of a call: options, then the function's
    ``@task`` defaults, then the configuration (``max_retries``)."""
    defaults = getattr(fn, "defaults", {})
    name = task_path(fn)
    queue = options.queue if options.queue is not None else defaults.get("queue") or "default"
    if not QUEUE_NAME.match(queue):
        raise TaskDefinitionError(
            f"queue name {queue!r} is invalid: use 1-255 letters, digits, '_', '.', ':' or '-'"
        )
    priority = _checked_int("_priority", _first(options.priority, defaults.get("priority"), 0))
    retries = _first(options.max_retries, defaults.get("max_retries"), max_retries)
    if _checked_int("_max_retries", retries) < 0:
        raise TaskDefinitionError(f"_max_retries must be >= 0, got {retries}")
    timeout = _first(options.timeout, defaults.get("timeout"))
    if timeout is not None and not (_finite(timeout) and timeout > 0):
        raise TaskDefinitionError(f"_timeout must be a positive number of seconds, got {timeout!r}")
    return name, queue, priority, int(retries), timeout


def when_and_links(options: TaskOptions) -> tuple[uuid.UUID | None, tuple[uuid.UUID, ...]]:
    """Check ``_delay`` and ``_eta``; return the parent and the dependencies (parent first)."""
    if not (_finite(options.delay) and options.delay >= 0):
        raise TaskDefinitionError(f"_delay must be >= 0 seconds, got {options.delay!r}")
    if options.eta is not None and (
        not isinstance(options.eta, datetime) or options.eta.tzinfo is None
    ):
        raise TaskDefinitionError("_eta must be a timezone-aware datetime")
    parent = _task_id(options.parent) if options.parent is not None else None
    depends_on = tuple(
        dict.fromkeys([*([parent] if parent else []), *map(_task_id, options.depends_on)])
    )
    return parent, depends_on


def _task_id(value: Any) -> uuid.UUID:
    if isinstance(value, TaskRef):
        return value.task_id
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise TaskDefinitionError(f"{value!r} is not a task reference or task id") from None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _checked_int(option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > INT32:
        raise TaskDefinitionError(f"{option} must be an integer within ±{INT32}, got {value!r}")
    return value
