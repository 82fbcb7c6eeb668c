"""The retention scenario of ``scripts/bench.py``: a producer at a fixed rate against one server
with a short ``result_ttl`` for a while; the table's rows, sizes and dead rows over time (flat
after the first TTL when the pruner keeps up), and pickup latency while a prune batch runs
against between batches (the pruner must not stall claims)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import bench_tasks
import psycopg
from psycopg.rows import dict_row

from qsup import Queue

TICK = 0.005  # seconds between the producer's batches
SAMPLE_EVERY = 5.0  # seconds between samples of the tables
NEAR = 0.025  # seconds: a task claimed this close to a sample that saw a prune ran during one


def run(
    url: str, sql: dict[str, str], rate: int, seconds: float, check: Callable[[], None]
) -> dict[str, Any]:
    q = Queue(url)
    samples: list[dict[str, Any]] = []
    pickups: list[tuple[float, float]] = []  # (start stamp, pickup ms)
    pruning: list[float] = []  # epoch times a sample saw a prune statement running
    sent = 0
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            start = time.monotonic()
            next_sample = start
            read_until = datetime.now(UTC)
            while (now := time.monotonic()) < start + seconds:
                due = int((now - start) * rate) - sent
                if due > 0:
                    q.add_tasks([(bench_tasks.stamp_sleep, (0.0,), {})] * due)
                    sent += due
                if conn.execute(sql["pruner_active"]).fetchone()[0]:
                    pruning.append(time.time())
                if now >= next_sample:
                    next_sample += SAMPLE_EVERY
                    row = conn.cursor(row_factory=dict_row).execute(sql["retention_sample"])
                    samples.append({"t": round(now - start, 1), **(row.fetchone() or {})})
                    until = datetime.now(UTC)
                    params = {"since": read_until, "until": until}
                    for started, enqueued in conn.execute(sql["retention_pickups"], params):
                        pickups.append((started, (started - enqueued) * 1000))
                    read_until = until
                    check()
                time.sleep(max(0.0, min(start + seconds, now + TICK) - time.monotonic()))
    finally:
        q.close()
    during, between = _split(pickups, pruning)
    return {
        "offered_per_s": rate,
        "seconds": seconds,
        "enqueued": sent,
        "pickup_ms_during_prunes": _pcts(during),
        "pickup_ms_between_prunes": _pcts(between),
        "prune_samples": len(pruning),
        "samples": samples,
    }


def _split(
    pickups: list[tuple[float, float]], pruning: list[float]
) -> tuple[list[float], list[float]]:
    marks = sorted(pruning)
    during: list[float] = []
    between: list[float] = []
    for started, ms in pickups:
        i = bisect.bisect_left(marks, started - NEAR)
        (during if i < len(marks) and marks[i] <= started + NEAR else between).append(ms)
    return during, between


def _pcts(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"tasks": 0}
    values = sorted(values)

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 2)

    return {"tasks": len(values), "p50": at(0.5), "p99": at(0.99)}
