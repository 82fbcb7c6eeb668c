"""The worker's side of middleware: hooks around each attempt, chained once per process.

With no worker hook configured none of this runs (the runner keeps its plain path). Otherwise
the task's function is wrapped once, at its first call, in the ``around_task`` layers, and
each attempt runs ``before_task`` hooks, the wrapped call, then one of ``after_task``,
``on_retry`` (a retry follows, with its delay) or ``on_failure`` (no retry left).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Callable
from typing import Any

from qsup.errors import TaskDefinitionError, TaskNotAllowed, TaskTimeout
from qsup.middleware import Chain, Hook, call_hooks
from qsup.protocol import Job
from qsup.settings import Config
from qsup.supervisor import policy
from qsup.task_view import Task

Call = Callable[[Any, Any, Any], Any]  # (task, args, kwargs)
NOT_ALLOWED = f"{TaskNotAllowed.__name__}: "  # how the runner words a refusal
Function = tuple[Callable[..., Any], bool]


def _in_loop(hooks: tuple[Hook, ...], loop: asyncio.AbstractEventLoop) -> tuple[Hook, ...]:
    """``async def`` hooks run to completion on the worker's loop."""

    def run(hook: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args: loop.run_until_complete(hook(*args))

    return tuple((n, run(h) if inspect.iscoroutinefunction(h) else h) for n, h in hooks)


def _layer(around: Callable[..., Any], inner: Call) -> Call:
    def call(task: Task, args: Any, kwargs: Any) -> Any:
        return around(task, lambda: inner(task, args, kwargs))

    return call


def _async_layer(around: Callable[..., Any], inner: Call) -> Call:
    async def call(task: Task, args: Any, kwargs: Any) -> Any:
        return await around(task, lambda: inner(task, args, kwargs))

    return call


class Hooked:
    """The hooks of this worker process, and what the current attempt's call left behind."""

    def __init__(self, chain: Chain, loop: asyncio.AbstractEventLoop, config: Config) -> None:
        self.before = _in_loop(chain.before_task, loop)
        self.after = _in_loop(chain.after_out, loop)
        self.failure = _in_loop(chain.failure_out, loop)
        self.retry = _in_loop(chain.retry_out, loop)
        self.around_sync = [h for _, h in chain.around_sync]
        self.around_async = [h for _, h in chain.around_async]
        self.backoff = (config.retry_backoff_base, config.retry_backoff_max)
        self.task: Task | None = None
        self.value: Any = None
        self.exc: BaseException | None = None

    def wrapping(self, function: Callable[[str], Function]) -> Callable[[str], Function]:
        """``function`` (a task path to its function) with each function wrapped, once."""
        return functools.cache(lambda path: self._wrap(*function(path)))

    def _wrap(self, fn: Callable[..., Any], is_async: bool) -> Function:
        """``fn`` inside the around layers, outermost first; the wrapper keeps ``fn``'s
        signature (``__wrapped__``) for the runner's argument check."""
        if is_async:

            async def innermost(task: Task, args: Any, kwargs: Any) -> Any:
                return await fn(*args, **kwargs)

            call: Call = innermost
            for around in reversed(self.around_async):
                call = _async_layer(around, call)

            async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    self.value = value = await call(self.task, args, kwargs)
                except BaseException as exc:
                    self.exc = exc
                    raise
                return value

            return functools.wraps(fn)(wrapped_async), True

        call = lambda task, args, kwargs: fn(*args, **kwargs)  # noqa: E731
        for around in reversed(self.around_sync):
            call = _layer(around, call)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                self.value = value = call(self.task, args, kwargs)
            except BaseException as exc:
                self.exc = exc
                raise
            return value

        return functools.wraps(fn)(wrapped), False

    def run(self, call: Callable[[Job, Any, Any], Any], job: Job, args: Any, kwargs: Any) -> Any:
        """One attempt through the hooks; ``call`` is the runner's, returning its ``_End``."""
        task = self.task = Task.of_job(job, args, kwargs)
        self.value = self.exc = None
        call_hooks(self.before, task)
        end = call(job, args, kwargs)
        if end.outcome == "ok":
            call_hooks(self.after, task, self.value)
            self.value = None
            return end
        # the supervisor's decision, taken here so on_retry knows the delay (sent along)
        delay = policy.after_failure(
            end.outcome, job.attempts, job.max_retries, end.delay, *self.backoff, random.random()
        )
        exc: BaseException | None = self.exc
        if end.outcome == "timeout" and not isinstance(exc, TaskTimeout):
            exc = TaskTimeout(end.error)  # an async task's timeout cancels it
        elif exc is None:  # refused before or after the call (allow-list, import, result)
            refused = (end.error or "").startswith(NOT_ALLOWED)
            exc = (TaskNotAllowed if refused else TaskDefinitionError)(end.error)
        self.exc = None
        if delay is None:
            call_hooks(self.failure, task, exc)
            return end
        call_hooks(self.retry, task, exc, delay)
        return end._replace(delay=delay)
