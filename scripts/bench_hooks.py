"""The hooks scenario of ``scripts/bench.py``: what middleware and tracing cost per task.

``micro``: one worker's ``Runner.run`` of a no-op job in this process, plain, with one no-op
middleware (every worker hook) and with tracing (an SDK whose batch processor discards the
spans), in microseconds per task. ``drain``: the no-op drain of ``qsup serve --workers 2``
plain, with that middleware and with ``otel = true`` (every span recorded, then 1 in 10
sampled by the SDK's own sampler), interleaved run by run so the machine's
noise falls on all three alike."""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from typing import Any

from qsup import context, protocol
from qsup.settings import load_config
from qsup.worker.runner import Runner

GIVEN = {"imports": "bench_tasks"}  # what its server imports: workers run only that
MIDDLEWARE = "bench_tasks:NoopMiddleware"
TRACING = {"QUEUE_OTEL": "1", "QUEUE_WORKER_INIT": "bench_tasks:otel_init"}
SAMPLED = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
JOB = protocol.Job("01900000-0000-7000-8000-000000000000", "bench_tasks:noop", "[]", "{}",
                   300.0, 1, 3, "{}", "default", None)  # fmt: skip


def _per_task_us(runner: Runner, count: int) -> float:
    """The best of five rounds (the least disturbed), in microseconds per run."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(count):
            runner.run(JOB)
        best = min(best, time.perf_counter() - t0)
    return round(best / count * 1e6, 2)


def sdk_available() -> bool:
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def micro(count: int) -> dict[str, Any]:
    context.bind_channel(lambda data: None)
    plain = Runner(load_config(GIVEN))
    hooked = Runner(load_config({**GIVEN, "middleware": [MIDDLEWARE]}))
    out: dict[str, Any] = {"runs": count}
    rounds = [(_per_task_us(plain, count), _per_task_us(hooked, count)) for _ in range(3)]
    out["plain_us"] = min(r[0] for r in rounds)
    out["noop_middleware_us"] = min(r[1] for r in rounds)
    out["middleware_cost_us"] = round(out["noop_middleware_us"] - out["plain_us"], 2)
    if sdk_available():
        import bench_tasks

        bench_tasks.otel_init()  # this process's provider, set once, last
        out["otel_us"] = _per_task_us(Runner(load_config({**GIVEN, "otel": True})), count)
        out["otel_cost_us"] = round(out["otel_us"] - out["plain_us"], 2)
    return out


def drain(run: Callable[[dict[str, str]], dict[str, Any]], repeats: int) -> dict[str, Any]:
    """``run(env)`` drains the no-op tasks once with that environment; its ``tasks_per_s``."""
    variants = {"plain": {}, "noop_middleware": {"QUEUE_MIDDLEWARE": MIDDLEWARE}}
    if sdk_available():  # every span recorded, then the SDK's sampler keeping 1 trace in 10
        variants["otel"] = TRACING
        variants["otel_sampled_10pct"] = TRACING | SAMPLED
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, env in variants.items():
            runs[name].append(run(env))
    out: dict[str, Any] = {}
    # tasks_per_s counts the start-up; steady_tasks_per_s is first start to last end;
    # cpu_us_per_task is qsup's own CPU (supervisor and workers, not PostgreSQL's), the figure
    # least moved by the neighbours' load
    for key in ("tasks_per_s", "steady_tasks_per_s", "cpu_us_per_task"):
        medians = {n: statistics.median(r[key] for r in rs) for n, rs in runs.items()}
        out[key] = {n: [round(r[key], 1) for r in rs] for n, rs in runs.items()}
        out[f"{key}_vs_plain"] = {n: round(v / medians["plain"], 3) for n, v in medians.items()}
    return out
