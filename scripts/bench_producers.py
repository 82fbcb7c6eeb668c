"""The producers scenario of ``scripts/bench.py`` (SPEC §15): N producer processes, each
enqueuing one no-op task per transaction (``Queue.add_task``) as fast as it can, with wake-ups
on and off, and a bare INSERT of the same row beside them; tasks/s of each. With NOTIFY in each
enqueue's transaction, PostgreSQL serialised the producers' commits on its notify lock."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import bench_tasks
import psycopg

from qsup import Queue

MODES = ("notify", "no_notify", "bare_insert")


def _produce(url: str, mode: str, sql: str, go: Any, stop_at: Any, counts: Any, i: int) -> None:
    if mode == "no_notify":
        os.environ["QUEUE_USE_POSTGRESQL_NOTIFY"] = "false"
    n = 0
    if mode == "bare_insert":
        with psycopg.connect(url, autocommit=True) as conn:
            go.wait()
            while time.time() < stop_at.value:
                conn.execute(sql)
                n += 1
    else:
        q = Queue(url)
        q.add_task(bench_tasks.noop)  # the pool, the settings, the function checked once
        go.wait()
        while time.time() < stop_at.value:
            q.add_task(bench_tasks.noop)
            n += 1
        q.close()
    counts[i] = n


def run_once(url: str, bare_sql: str, producers: int, mode: str, seconds: float) -> float:
    """Tasks/s of ``producers`` processes for ``seconds``."""
    ctx = multiprocessing.get_context("fork")  # the parent imported qsup: children start warm
    go, stop_at = ctx.Event(), ctx.Value("d", 0.0)
    counts = ctx.Array("q", producers)
    procs = [
        ctx.Process(target=_produce, args=(url, mode, bare_sql, go, stop_at, counts, i))
        for i in range(producers)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0 + producers * 0.05)  # every producer connected and warmed up
    stop_at.value = time.time() + seconds
    go.set()
    for p in procs:
        p.join(seconds + 60)
        if p.exitcode is None:
            p.kill()
    return round(sum(counts) / seconds, 1)


def run(
    url: str, sql: dict[str, str], sizes: list[int], seconds: float, reset: Any
) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for n in sizes:
        row: dict[str, Any] = {}
        for mode in MODES:
            reset(url)
            row[mode] = run_once(url, sql["producer_bare_insert"], n, mode, seconds)
        row["notify_vs_no_notify"] = round(row["notify"] / row["no_notify"], 3)
        runs[f"producers_{n}"] = row
    return {"seconds": seconds, "note": "tasks/s, one task per transaction", "runs": runs}
