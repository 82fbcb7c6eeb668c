"""Middleware: the user's code around every task (SPEC §12).

A middleware is an object with any of the hook methods below, or a class instantiated once per
process with no arguments. They come from the ``middleware`` setting (``"module:name"``), then
from :func:`add_middleware`, in that order, after qsup's own tracing when ``otel`` is on. Hooks
run in the declared order, outermost first, and in reverse on the way out. A hook that raises
is logged with its name and changes nothing; only ``around_task`` may change an outcome, by
raising or by returning another result.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from loguru import logger

from qsup.encoding import resolve_task, to_json
from qsup.errors import ConfigError, TaskDefinitionError
from qsup.task_view import MAX_HEADERS_BYTES, Task

if TYPE_CHECKING:
    from qsup.protocol import Job
    from qsup.settings import Config

__all__ = ["Task", "add_middleware", "chain"]


Hook = tuple[str, Callable[..., Any]]  # the hook's name for the log, and the bound method


class Chain(NamedTuple):
    """The hooks of one process's middleware, by kind; ``*_out`` lists are reversed."""

    on_enqueue: tuple[Hook, ...]
    before_task: tuple[Hook, ...]
    after_out: tuple[Hook, ...]
    failure_out: tuple[Hook, ...]
    retry_out: tuple[Hook, ...]
    around_sync: tuple[Hook, ...]  # outermost first
    around_async: tuple[Hook, ...]
    died_out: tuple[Hook, ...]

    @property
    def in_worker(self) -> bool:
        return any(self[1:7])


_added: list[Any] = []
_chains: dict[tuple[tuple[str, ...], bool], Chain] = {}  # by the settings: once per process
_by_config: dict[int, tuple[Config, Chain]] = {}  # the fast path, by id(config)


def add_middleware(middleware: Any) -> None:
    """Register a middleware (an object, or a class to instantiate) in this process, after
    the configured ones. Call it at import time of a module the server imports."""
    _added.append(middleware)
    forget_instances()


def forget_instances() -> None:
    """In a new worker: instantiate the middleware classes again in this process."""
    _chains.clear()
    _by_config.clear()


def chain(config: Config) -> Chain:
    """This process's hooks for ``config`` (loaded on first use; ConfigError if one does not
    import)."""
    found = _by_config.get(id(config))
    if found is not None and found[0] is config:
        return found[1]
    key = (tuple(config.middleware), config.otel)
    if key not in _chains:
        _chains[key] = _build(_load(config))
    if len(_by_config) > 64:  # Queue() objects come and go, each with its Config
        _by_config.clear()
    _by_config[id(config)] = (config, _chains[key])
    return _chains[key]


def _load(config: Config) -> list[Any]:
    objects: list[Any] = []
    if config.otel:
        from qsup.otel import Tracing

        objects.append(Tracing)
    for path in config.middleware:
        try:
            objects.append(resolve_task(path))
        except TaskDefinitionError as exc:
            source = config.sources.get("middleware", "default")
            raise ConfigError(f"middleware: {path!r} ({source}): {exc}") from None
    objects.extend(_added)
    instances = []
    for obj in objects:
        try:
            instances.append(obj() if isinstance(obj, type) else obj)
        except Exception as exc:  # the user's constructor
            raise ConfigError(
                f"middleware: {_name(obj)}() raised {type(exc).__name__}: {exc}"
            ) from None
    return instances


def _name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _hooks(instances: list[Any], method: str) -> list[Hook]:
    return [
        (f"{_name(m)}.{method}", getattr(m, method))
        for m in instances
        if callable(getattr(m, method, None))
    ]


def _around(m: Any, for_async: bool) -> Hook | None:
    """The around hook of ``m`` for sync or async tasks: async tasks take
    ``around_task_async``, or an ``async def around_task``; sync ones a plain ``around_task``."""
    hook = getattr(m, "around_task", None)
    if for_async and callable(alt := getattr(m, "around_task_async", None)):
        return f"{_name(m)}.around_task_async", alt
    if callable(hook) and inspect.iscoroutinefunction(hook) == for_async:
        return f"{_name(m)}.around_task", hook
    return None


def _build(instances: list[Any]) -> Chain:
    return Chain(
        tuple(_hooks(instances, "on_enqueue")),
        tuple(_hooks(instances, "before_task")),
        tuple(reversed(_hooks(instances, "after_task"))),
        tuple(reversed(_hooks(instances, "on_failure"))),
        tuple(reversed(_hooks(instances, "on_retry"))),
        tuple(h for m in instances if (h := _around(m, False))),
        tuple(h for m in instances if (h := _around(m, True))),
        tuple(reversed(_hooks(instances, "on_worker_died"))),
    )


def call_hooks(hooks: tuple[Hook, ...], *args: Any) -> None:
    """Call each hook; one that raises is logged by name and the rest still run."""
    for name, hook in hooks:
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - a hook never changes the task's outcome
            logger.opt(exception=True).error("middleware hook {} raised; ignored", name)


def on_enqueue(
    config: Config, task_id: str, name: str, queue: str, args: Any, kwargs: Any, options: Any
) -> str | None:
    """A task about to be inserted: its headers (``options.headers``, then what the
    ``on_enqueue`` hooks add) as JSON text, None when there are none."""
    headers = options.headers
    if headers is not None and not isinstance(headers, Mapping):
        raise TaskDefinitionError(f"_headers must be a dict, got {type(headers).__name__}")
    found = _by_config.get(id(config))  # chain()'s fast path, inlined: once per enqueued row
    hooks = found[1].on_enqueue if found is not None and found[0] is config else None
    if hooks is None:
        hooks = chain(config).on_enqueue
    if hooks:
        task = Task(task_id, name, queue, 0, list(args), kwargs, dict(headers or {}))
        call_hooks(hooks, task)
        headers = task.headers
    if not headers:
        return None
    text = to_json(dict(headers), "the task's headers")
    if len(text.encode()) > MAX_HEADERS_BYTES:
        raise TaskDefinitionError(
            f"the task's headers take more than {MAX_HEADERS_BYTES} bytes encoded"
        )
    return text


def worker_died(config: Config, job: Job, cause: str) -> None:
    """In the supervisor: the task's worker died under it (``cause``: timeout, cancel,
    shutdown or crash)."""
    hooks = chain(config).died_out
    if hooks:
        args, kwargs = json.loads(job.args), json.loads(job.kwargs)
        call_hooks(hooks, Task.of_job(job, args, kwargs), cause)
