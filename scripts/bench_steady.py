"""The steady-load scenario of ``scripts/bench.py``: a producer enqueues at a fixed offered rate
(a batch every ``TICK`` seconds) while the server works; reports completed/s, pickup latency
(insert -> the task's own start stamp) and the task table's dead rows and sizes over time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import bench_tasks
import psycopg
from psycopg.rows import dict_row

from qsup import Queue

TICK = 0.005  # seconds between the producer's batches
SAMPLE_EVERY = 1.0  # seconds between samples of the task table
TASK_SECONDS = 0.001  # each task takes 1 ms


def run_rate(
    url: str, sql: dict[str, str], rate: int, seconds: float, check: Callable[[], None]
) -> dict[str, Any]:
    """Offer ``rate`` tasks/s for ``seconds`` to the server already serving ``url``, then let
    it finish (``check`` raises if it died); the figures of that run."""
    q = Queue(url)
    since = datetime.now(UTC)
    samples: list[dict[str, Any]] = []
    sent = 0
    try:
        with psycopg.connect(url, autocommit=True) as conn:

            def sample(t: float) -> dict[str, Any]:
                row = conn.cursor(row_factory=dict_row).execute(sql["steady_sample"]).fetchone()
                samples.append({"t": round(t, 1), **(row or {})})
                return samples[-1]

            first = sample(0.0)
            start = next_sample = time.monotonic()
            while (now := time.monotonic()) < start + seconds:
                due = int((now - start) * rate) - sent
                if due > 0:
                    q.add_tasks([(bench_tasks.stamp_sleep, (TASK_SECONDS,), {})] * due)
                    sent += due
                if now >= next_sample:
                    next_sample += SAMPLE_EVERY
                    sample(now - start)
                    check()
                time.sleep(max(0.0, min(start + seconds, now + TICK) - time.monotonic()))
            window = sample(time.monotonic() - start)
            drained = _drain(conn, sql, check)
            sample(time.monotonic() - start)
            count, pcts = conn.execute(sql["steady_pickup"], {"since": since}).fetchone() or (
                0,
                None,
            )
    finally:
        q.close()
    p50, p99 = pcts or (None, None)
    return {
        "offered_per_s": rate,
        "seconds": seconds,
        "enqueued": sent,
        "completed_per_s": round((window["completed"] - first["completed"]) / seconds, 1),
        "unfinished_at_end": window["unfinished"],
        "drained_after_s": drained,
        "pickup_ms": {"p50": _ms(p50), "p99": _ms(p99), "tasks": count},
        "updates": window["updates"] - first["updates"],
        "hot_updates": window["hot_updates"] - first["hot_updates"],
        "samples": samples,
    }


@contextmanager
def held_snapshot(url: str, sql: dict[str, str]) -> Iterator[None]:
    """A session idle in a repeatable-read transaction for as long as the block runs."""
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute(sql["hold_snapshot"])
        try:
            yield
        finally:
            conn.rollback()


def _drain(conn: Any, sql: dict[str, str], check: Callable[[], None]) -> float | None:
    """Seconds from the producer's stop until nothing is unfinished (None: not in 2 minutes)."""
    stopped = time.monotonic()
    while time.monotonic() < stopped + 120:
        row = conn.execute(sql["steady_sample"]).fetchone()
        if row is not None and row[1] == 0:
            return round(time.monotonic() - stopped, 2)
        check()
        time.sleep(0.05)
    return None


def _ms(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None
