"""The per-minute series of outcomes (``queued_task_minutes``, migration 0014).

Each server's writer adds its flush's completions, failures and retries to one row per
minute, queue and task name (:func:`record`, one upsert per flush); reads sum a few rows
instead of scanning finished tasks. Run time and pickup latency are digests: counts in
:data:`BUCKETS` fixed log-scale buckets, which rows of any servers and minutes add up
element by element, so :func:`quantile` reads p50/p95 across them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from qsup.protocol import TaskId
from qsup.sql import queries

Conn = psycopg.Connection[Any]
Q = queries()

BUCKETS = 47  # the SQL's bucket count (0014): 1 ms .. about 99 minutes in steps of sqrt(2)
SMALLEST = 0.001  # seconds: bucket 0 holds up to this


def upper_bound(bucket: int) -> float:
    """Seconds at the top of ``bucket`` (``inf`` for the last, which holds the rest)."""
    return math.inf if bucket >= BUCKETS - 1 else SMALLEST * 2 ** (bucket / 2)


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a digest, interpolated geometrically inside its bucket (within
    the bucket's width, ±19 %); None for an empty digest."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bucket, count in enumerate(buckets):
        if count and seen + count >= rank:
            top = upper_bound(min(bucket, BUCKETS - 2))  # the overflow reads as its floor
            bottom = top / math.sqrt(2) if bucket else 0.0
            share = (rank - seen) / count
            return bottom * (top / bottom) ** share if bottom else top * share
        seen += count
    return upper_bound(BUCKETS - 2)


def record(
    conn: Conn,
    server_id: int,
    completed: Sequence[TaskId],
    failed: Sequence[TaskId],
    retried: Sequence[TaskId],
) -> None:
    """Add a flush's outcomes (already written in this transaction) to the series."""
    conn.execute(
        Q["series_record"],
        {
            "server_id": server_id,
            "completed": list(completed),
            "failed": list(failed),
            "retried": list(retried),
        },
    )


def read(
    conn: Conn,
    step: int,
    queue: str | None = None,
    since: datetime | None = None,
    seconds: int = 3600,
) -> list[dict[str, Any]]:
    """Steps of ``step`` seconds from ``since`` on (or the last ``seconds``), per queue, with
    p50/p95 of run time and pickup latency read from the summed digests."""
    params = {"since": since, "seconds": seconds, "step": step, "queue": queue}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(Q["series_read"], params).fetchall()
    for row in rows:
        used = row.pop("buckets")
        row.update(percentiles(dense(used, row.pop("runs")), "run"))
        row.update(percentiles(dense(used, row.pop("waits")), "wait"))
    return rows


def by_task(conn: Conn, seconds: int) -> list[dict[str, Any]]:
    """Per task name over the last ``seconds``: outcomes, cost and digests
    (``run_buckets``, ``wait_buckets``, ``cpu_buckets``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(Q["series_by_task"], {"seconds": seconds}).fetchall()
    for row in rows:
        used = row.pop("buckets")
        for digest, values in (("run", "runs"), ("wait", "waits"), ("cpu", "cpus")):
            row[f"{digest}_buckets"] = dense(used, row.pop(values))
    return rows


def dense(used: list[int] | None, counts: list[int] | None) -> list[int]:
    """A digest of :data:`BUCKETS` counts from the buckets used (1-based, as SQL's ordinality
    numbers them) and their counts."""
    digest = [0] * BUCKETS
    for bucket, count in zip(used or (), counts or (), strict=True):
        digest[bucket - 1] = int(count)
    return digest


def percentiles(buckets: Sequence[int], prefix: str) -> dict[str, float | None]:
    return {
        f"{prefix}_p50_seconds": quantile(buckets, 0.5),
        f"{prefix}_p95_seconds": quantile(buckets, 0.95),
    }


def prune(conn: Conn, ttl: float, limit: int) -> int:
    """Delete up to ``limit`` series rows older than ``ttl`` seconds; the number deleted (call
    again while it equals ``limit``)."""
    return conn.execute(Q["series_prune"], {"ttl": ttl, "limit": limit}).rowcount
