"""Run one job: import by path, bind arguments, run sync or async under a timeout."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

import qsup
from qsup import context, log, middleware, protocol
from qsup.binding import check_call
from qsup.encoding import resolve_task, to_json
from qsup.errors import NonRetryableError, Retry, TaskDefinitionError, TaskTimeout
from qsup.settings import Config
from qsup.trust import server_gate
from qsup.worker.hooked import NOT_ALLOWED, Hooked
from qsup.worker.meter import Meter
from qsup.worker.probe import Running, answer
from qsup.workflow_values import INPUTS_KEY, step_arguments


@cache
def _function(path: str) -> tuple[Callable[..., Any], bool]:
    """The task's function and whether it is a coroutine function (imported once)."""
    fn = resolve_task(path)
    fn = getattr(fn, "__qsup_task__", fn)
    return fn, inspect.iscoroutinefunction(fn)


class _End(NamedTuple):
    """How a call ended."""

    outcome: protocol.Outcome
    result: str | None = None
    error: str | None = None
    delay: float | None = None


# Frames every task runs under: qsup's own and asyncio's, left out of the stored traceback.
_QSUP_DIR = os.path.dirname(str(qsup.__file__)) + os.sep
_RUNNER_DIRS = (_QSUP_DIR, os.path.dirname(str(asyncio.__file__)) + os.sep)


def _user_frames(stack: traceback.StackSummary) -> traceback.StackSummary:
    """The frames from the user's first one on, without qsup's own after the user's last (the
    alarm handler that raised TaskTimeout, qsup code a task called)."""
    frames = list(stack)
    while frames and frames[0].filename.startswith(_RUNNER_DIRS):
        frames.pop(0)
    while frames and frames[-1].filename.startswith(_QSUP_DIR):
        frames.pop()
    return traceback.StackSummary.from_list(frames)


def _traceback(limit: int | None = None) -> str:
    """The current exception's traceback as the task row and its log keep it: the user's
    frames only, in every exception of the chain. An error qsup raised itself, with no user
    frame (wrong arguments, a result too big), is its message alone."""
    exc = sys.exc_info()[1]
    assert exc is not None
    shown = traceback.TracebackException.from_exception(exc, limit=limit)
    seen: set[int] = set()
    link: traceback.TracebackException | None = shown
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.stack = _user_frames(link.stack)
        link = link.__cause__ or link.__context__
    return "".join(shown.format())


def _raise_timeout(signum: int, frame: Any) -> None:
    raise TaskTimeout("task exceeded its timeout")


def _call_with_alarm(
    fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], seconds: float
) -> Any:
    """Raise TaskTimeout in this (main) thread after ``seconds`` (the handler is installed once
    per worker). Sync code in a C call that ignores it, or a task that takes SIGALRM for
    itself, is killed by the supervisor after the grace period."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class Runner:
    """Runs jobs in this process; keeps one event loop for async tasks."""

    def __init__(self, config: Config) -> None:
        self.loop = asyncio.new_event_loop()
        signal.signal(signal.SIGALRM, _raise_timeout)
        self.gate = server_gate(config)  # after worker_init: what it registered counts too
        self.meter = Meter()
        self.max_result_bytes = config.max_result_bytes
        context.configure(config)
        self.running: Running | None = None  # read by the reporter's thread (Inspect)
        self.hooks: Hooked | None = None  # with no middleware, no layer is added
        self.function: Callable[[str], tuple[Callable[..., Any], bool]] = _function
        if (chain := middleware.chain(config)).in_worker:
            self.hooks = Hooked(chain, self.loop, config)
            self.function = self.hooks.wrapping(_function)

    def run(self, job: protocol.Job) -> protocol.Finished:
        started, cpu = time.time(), self.meter.start()
        args, kwargs, ctx = _decode(job.args), _decode(job.kwargs), _decode(job.context)
        context.enter(job, ctx if isinstance(ctx, dict) else {})
        self.running = (job.id, started, cpu)
        if log.debug_events:  # here: the supervisor does not see each start of a batch
            log.event("started", job.id).debug("task {} started", job.name)
        try:
            if self.hooks is None:
                end = self._call(job, args, kwargs)
            else:
                end = self.hooks.run(self._call, job, args, kwargs)
        finally:
            self.running = None
            saved = context.snapshot_context()
            context.leave()
        if saved is not None:
            context.send(protocol.SaveContext(job.id, saved))
        done = time.time()
        cpu, peak, growth = self.meter.stop(cpu, done - started)
        return protocol.Finished(
            job.id,
            end.outcome,
            started,
            done,
            end.result,
            end.error,
            end.delay,
            self.meter.unique,
            cpu,
            peak,
            growth,
        )

    def inspect(self, task_id: protocol.TaskId) -> None:
        """Answer an operator's ``Inspect`` (from the reporter's thread, or between jobs)."""
        context.send(answer(task_id, self.running, self.loop, self.meter, _RUNNER_DIRS))

    def _call(self, job: protocol.Job, args: Any, kwargs: Any) -> _End:
        refusal = self.gate.refusal(job.name)  # before anything is imported
        if refusal is not None:
            return _End("fatal", None, f"{NOT_ALLOWED}{refusal}")
        try:
            fn, is_async = self.function(job.name)
            if args.__class__ is dict and INPUTS_KEY in args:  # a workflow step's input
                args = step_arguments(args)
            _check_shapes(job.name, args, kwargs)
            try:
                if is_async:
                    value = self.loop.run_until_complete(
                        asyncio.wait_for(fn(*args, **kwargs), job.timeout)
                    )
                else:
                    value = _call_with_alarm(fn, args, kwargs, job.timeout)
            except TypeError:
                check_call(fn, job.name, args, kwargs)  # the call itself did not fit?
                raise
            return _End("ok", self._result_json(job.name, value))
        except (TimeoutError, TaskTimeout):
            return _End(
                "timeout", None, f"TaskTimeout: {job.name} ran longer than {job.timeout:g} s"
            )
        except Retry as exc:
            return _End("retry", None, f"Retry: {exc.reason}", delay=exc.delay)
        except (TaskDefinitionError, NonRetryableError):
            return _End("fatal", None, _traceback(limit=-8))
        except Exception:
            return _End("error", None, _traceback())

    def _result_json(self, name: str, value: Any) -> str:
        if value is None:
            return "null"
        text = to_json(value, f"the result of {name}")
        size = len(text.encode())
        if size > self.max_result_bytes:
            raise TaskDefinitionError(
                f"the result of {name} takes {size} bytes encoded, more than"
                f" max_result_bytes={self.max_result_bytes} (QUEUE_MAX_RESULT_BYTES)"
            )
        return text


_EMPTY = {"[]": list, "{}": dict}  # most tasks: no kwargs, no context


def _decode(text: str) -> Any:
    return _EMPTY[text]() if text in _EMPTY else json.loads(text)


def _check_shapes(name: str, args: Any, kwargs: Any) -> None:
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TaskDefinitionError(
            f"malformed task row for {name}: args must be a JSON array and kwargs a JSON"
            f" object (got {type(args).__name__} and {type(kwargs).__name__})"
        )
