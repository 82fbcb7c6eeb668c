"""Task functions of the benchmark (``scripts/bench.py``); imported by ``qsup serve --import
bench_tasks`` with ``scripts/`` on PYTHONPATH."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def noop() -> None:
    return None


def stamp() -> float:
    """The wall-clock time at which the task function started."""
    return time.time()


def sleep_sync(seconds: float) -> None:
    time.sleep(seconds)


async def sleep_async(seconds: float) -> None:
    await asyncio.sleep(seconds)


def burn(seconds: float) -> float:
    """Spin on the CPU for ``seconds`` of this process's CPU time."""
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return seconds


def stamp_sleep(seconds: float) -> float:
    """Record the wall-clock start, then take ``seconds`` (the steady-load scenario's task)."""
    started = time.time()
    time.sleep(seconds)
    return started


class NoopMiddleware:
    """Every worker hook, doing nothing: the hooks scenario's cost of one middleware."""

    def before_task(self, task: Any) -> None:
        pass

    def after_task(self, task: Any, result: Any) -> None:
        pass

    def on_failure(self, task: Any, exc: BaseException) -> None:
        pass

    def around_task(self, task: Any, call_next: Any) -> Any:
        return call_next()


def otel_init() -> None:
    """worker_init of the tracing runs: an SDK provider whose batch processor discards spans
    (what a real exporter costs in the worker, minus the network)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    # The default queue (2,048 spans, exported every 5 s) overflows at bench rates: a worker
    # draining no-op tasks makes about 3,000 spans/s, the micro benchmark 10,000 in 0.1 s. The
    # SDK then drops spans and says "Queue full, dropping Span." on stderr, and the run
    # measures less than a real exporter's work. 65,536 spans exported every 0.5 s keep all.
    provider.add_span_processor(
        BatchSpanProcessor(Discard(), max_queue_size=65536, schedule_delay_millis=500)
    )
    trace.set_tracer_provider(provider)


def stamp_hop(previous: float) -> float:
    """A chain step: the wall-clock time it started (the previous step's is its input)."""
    return time.time()


def count_inputs(values: list) -> int:
    """A group's ``.then``: how many results it was handed."""
    return len(values)
