"""OpenTelemetry tracing (``otel = true``, ``pip install "qsup[otel]"``): qsup's own middleware.

It uses the API only: the application sets up the SDK and its exporters as usual, and in the
workers from a ``worker_init`` function (after the fork, so the exporters' threads live in the
process that uses them). At enqueue a PRODUCER span ``qsup enqueue <task>`` stores its W3C
trace context in the task's headers; each attempt runs in a CONSUMER span ``qsup run <task>``
whose parent is that context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Any

from qsup.errors import ConfigError, NonRetryableError, Retry, TaskDefinitionError, TaskTimeout
from qsup.task_view import Task

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the message is the test
    raise ConfigError("otel = true needs the OpenTelemetry API: pip install 'qsup[otel]'") from None


def outcome_of(exc: BaseException) -> str:
    """The attempt's outcome as the task row will say it (``ok`` when nothing was raised)."""
    if isinstance(exc, TaskTimeout | TimeoutError | asyncio.CancelledError):
        return "timeout"  # an async task's timeout reaches it as a cancellation
    if isinstance(exc, Retry):
        return "retry"
    if isinstance(exc, TaskDefinitionError | NonRetryableError):
        return "fatal"
    return "error"


def _attributes(task: Task, operation: str) -> dict[str, Any]:
    """Few attributes: the SDK checks each one, about a microsecond apiece."""
    return {
        "messaging.system": "qsup",
        "messaging.operation.type": operation,
        "messaging.destination.name": task.queue,  # the queue
        "messaging.message.id": task._id,  # the task's id
        "qsup.task.id": task._id,  # the names the README gives, beside the messaging ones
        "qsup.task.name": task.name,
        "qsup.task.queue": task.queue,
        "qsup.task.attempt": task.attempt,
    }


class Tracing:
    """The spans; outermost of the middleware, so the others run inside the consumer span."""

    def __init__(self) -> None:
        self.tracer = trace.get_tracer("qsup")  # follows the provider set up later

    def on_enqueue(self, task: Task) -> None:
        with self.tracer.start_as_current_span(
            f"qsup enqueue {task.name}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes(task, "send"),
        ):
            propagate.inject(task.headers)

    def _start(self, task: Task) -> tuple[Any, Token[Context]]:
        """The attempt's span, made current by hand: the SDK's context managers cost a few
        microseconds per task more."""
        attributes = _attributes(task, "process")
        attributes["qsup.task.outcome"] = "ok"  # replaced on failure: one check, not two
        span = self.tracer.start_span(
            f"qsup run {task.name}",
            context=propagate.extract(task.headers) if task.headers else None,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    def around_task(self, task: Task, call_next: Callable[[], Any]) -> Any:
        span, token = self._start(task)
        try:
            return call_next()
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    async def around_task_async(self, task: Task, call_next: Callable[[], Awaitable[Any]]) -> Any:
        span, token = self._start(task)
        try:
            return await call_next()
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()


def _failed(span: Any, exc: BaseException) -> None:
    outcome = outcome_of(exc)
    span.set_attribute("qsup.task.outcome", outcome)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{outcome}: {type(exc).__name__}"))
