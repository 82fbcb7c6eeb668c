"""The flow control scenario of ``scripts/bench.py`` (``--only flow``): its options, the
variants of the plain drain, and the rate adherence run."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import bench_tasks
import psycopg

from qsup.flow import parse_rate
from qsup.sql import parse_queries

SQL = parse_queries((Path(__file__).resolve().parent / "bench.sql").read_text(encoding="utf-8"))


class FlowArgs(NamedTuple):
    baseline: str | None  # a src/ directory whose qsup is the "before" of the plain drain
    rate: str  # the rate-limited queue's limit, "N/second|minute|hour"
    seconds: float  # how long its adherence is measured
    task_seconds: float  # the short tasks of the concurrency drain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flow-baseline",
        help="src/ directory of another checkout (e.g. /work/main/src): the flow scenario runs"
        " its plain drain interleaved with this checkout's",
    )
    parser.add_argument(
        "--flow-rate",
        default="50/second",
        help="rate of the flow scenario's limited queue (default %(default)s)",
    )
    parser.add_argument(
        "--flow-task-ms",
        type=float,
        default=10.0,
        help="run time of the concurrency drain's tasks (default %(default)s)",
    )
    parser.add_argument(
        "--flow-seconds", type=float, help="seconds the rate is measured (default 10 quick, 60)"
    )


def plain_variants(
    baseline: str | None, scripts: str
) -> list[tuple[str, dict[str, str] | None, bool]]:
    """(name, server env, another queue limited?) of each plain no-op drain."""
    variants: list[tuple[str, dict[str, str] | None, bool]] = []
    if baseline:
        path = os.pathsep.join([scripts, baseline])
        variants.append(("noop_baseline", {"PYTHONPATH": path}, False))
    variants.append(("noop_this", None, False))
    variants.append(("noop_this_other_queue_limited", None, True))
    return variants


def limit_other_queue(url: str, on: bool) -> None:
    """A limit on a queue the drain does not use: the claim then leaves it out (``skip``)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SQL["flow_limit_other" if on else "flow_clear_limits"])


def write_config(directory: str, text: str) -> str:
    path = Path(directory) / f"flow-{time.monotonic_ns()}.toml"
    path.write_text(text)
    return str(path)


def rate_adherence(
    url: str,
    how: FlowArgs,
    logdir: str,
    serve: Callable[[dict[str, str]], Any],
    enqueue: Callable[..., None],
) -> dict[str, Any]:
    """More tasks than the rate lets start in ``how.seconds``, one server with four workers;
    the starts the database recorded in the first ``how.seconds`` after the first start,
    against the rate, and the most starts in any window of the rate's period."""
    rate = parse_rate(how.rate)
    allowed = rate.starts * how.seconds / rate.period
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SQL["delete_measured"])
    enqueue(url, int(allowed * 1.5) + rate.starts, bench_tasks.noop, (), {"_queue": "rated"})
    config = write_config(logdir, f'[limits.rated]\nrate = "{how.rate}"\n')
    server = serve({"QSUP_CONFIG": config}).start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                first = conn.execute(SQL["flow_first_start"]).fetchone()[0]
                if first is not None and time.time() - first > how.seconds + 1:
                    break
                server.check()
                time.sleep(0.2)
            starts = [row[0] for row in conn.execute(SQL["flow_starts"])]
    finally:
        server.stop()
    in_run = [s for s in starts if s < starts[0] + how.seconds]
    return {
        "rate": how.rate,
        "seconds": how.seconds,
        "allowed": allowed,
        "started": len(in_run),
        "adherence": round(len(in_run) / allowed, 4),
        "most_in_any_period": most_within(starts, rate.period),
    }


def most_within(starts: list[float], window: float) -> int:
    best, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The ratios the issue asks for, beside the runs."""

    def median(key: str) -> float | None:
        run = result.get(key)
        return run["tasks_per_s"]["median"] if run else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    result["ratios"] = {
        "noop_this_vs_baseline": ratio(median("noop_this"), median("noop_baseline")),
        "noop_other_limited_vs_this": ratio(
            median("noop_this_other_queue_limited"), median("noop_this")
        ),
        "concurrency_8_vs_unlimited": ratio(
            median("short_concurrency_8"), median("short_unlimited")
        ),
        "rate_adherence": result["rate"]["adherence"],
    }
    return result
