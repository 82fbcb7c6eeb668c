"""Middleware, tasks and an OpenTelemetry set-up for the hooks tests, imported by real servers.

The recording middleware appends one JSON line per hook call to ``$QSUP_TEST_HOOKS`` (with the
process id), so a test reads what ran where and in which order."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from qsup import current_task
from qsup.middleware import Task


def _record(hook: str, who: str, task: Task, **extra: Any) -> None:
    line = {"pid": os.getpid(), "hook": hook, "mw": who, "task": str(task.id), "name": task.name}
    line.update(attempt=task.attempt, queue=task.queue, **extra)
    with open(os.environ["QSUP_TEST_HOOKS"], "a") as f:
        f.write(json.dumps(line, default=repr) + "\n")


class Outer:
    """Records every hook; adds a header at enqueue; wraps sync and async tasks."""

    who = "outer"

    def on_enqueue(self, task: Task) -> None:
        task.headers[self.who] = "yes"
        _record("on_enqueue", self.who, task, args=task.args, kwargs=task.kwargs)

    def before_task(self, task: Task) -> None:
        _record("before_task", self.who, task, headers=task.headers)

    def after_task(self, task: Task, result: Any) -> None:
        _record("after_task", self.who, task, result=result)

    def on_failure(self, task: Task, exc: BaseException) -> None:
        _record("on_failure", self.who, task, exc=type(exc).__name__)

    def on_retry(self, task: Task, exc: BaseException, delay: float) -> None:
        _record("on_retry", self.who, task, exc=type(exc).__name__, delay=delay)

    def around_task(self, task: Task, call_next: Any) -> Any:
        _record("around_enter", self.who, task)
        try:
            return call_next()
        finally:
            _record("around_exit", self.who, task)

    async def around_task_async(self, task: Task, call_next: Any) -> Any:
        _record("around_enter", self.who, task, is_async=True)
        try:
            return await call_next()
        finally:
            _record("around_exit", self.who, task, is_async=True)

    def on_worker_died(self, task: Task, cause: str) -> None:
        _record("on_worker_died", self.who, task, cause=cause)


class Inner(Outer):
    """The same, declared second; its hooks are async where qsup allows it."""

    who = "inner"

    async def before_task(self, task: Task) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        _record("before_task", self.who, task, headers=task.headers)

    async def around_task_async(self, task: Task, call_next: Any) -> Any:
        return await super().around_task_async(task, call_next)


class Raising:
    """Every hook but around_task raises: the tasks must end as if it were not there."""

    def _boom(self, *args: Any) -> None:
        raise RuntimeError("a broken hook")

    on_enqueue = before_task = after_task = on_failure = on_retry = on_worker_died = _boom


class Doubling:
    """An around_task that changes the result (allowed: it is the one hook that may)."""

    def around_task(self, task: Task, call_next: Any) -> Any:
        return call_next() * 2


def headers() -> dict[str, Any]:
    return current_task.headers


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def spans(path: str) -> list[dict[str, Any]]:
    """The spans a FileExporter wrote, in the order they ended."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def otel_init() -> None:
    """worker_init: an SDK provider whose spans go to ``$QSUP_TEST_SPANS``, one JSON line each
    (set up after the fork, in the process that makes the spans)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_file_exporter(os.environ["QSUP_TEST_SPANS"])))
    trace.set_tracer_provider(provider)


def span_dict(span: Any) -> dict[str, Any]:
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "attributes": dict(span.attributes),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
        "pid": os.getpid(),
    }


def _file_exporter(path: str) -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            with open(path, "a") as f:
                f.writelines(json.dumps(span_dict(s)) + "\n" for s in spans)
            return SpanExportResult.SUCCESS

    return FileExporter()
