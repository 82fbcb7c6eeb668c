"""The workflow scenarios of ``scripts/bench.py``: a wide group and its fan-in against the plain
no-op drain, and a long chain's per-hop latency against a single task's enqueue-to-start."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import bench_tasks
import psycopg

from qsup import Queue, chain, group, step
from qsup.settings import load_config

Serving = Callable[[], AbstractContextManager[Any]]


def group_then(url: str, members: int, serving: Serving, drained: Callable[..., Any]) -> dict:
    """``group(noop x members).then(count_inputs)`` enqueued, then drained by a fresh server:
    steps per second from the server's start to the last step's end."""
    # the group and its .then() are one step more than the default limit of 10,000
    q = Queue(config=load_config({"database_url": url, "max_workflow_steps": members + 1}))
    try:
        t0 = time.monotonic()
        fan_out = group(*(step(bench_tasks.noop) for _ in range(members)))
        wf = q.add_workflow(fan_out.then(step(bench_tasks.count_inputs)))
        enqueue_s = time.monotonic() - t0
        with serving() as serve:
            end, _ = drained(url, 300.0, serve)
            wall = end - serve.started_at
        if wf.result(timeout=10) != members:
            raise RuntimeError("the fan-in did not see every member's result")
    finally:
        q.close()
    return {"steps": members + 1, "enqueue_s": round(enqueue_s, 3), "wall_s": round(wall, 3),
            "steps_per_s": round((members + 1) / wall)}  # fmt: skip


def chain_hops(
    url: str, sql: dict[str, str], hops: int, serving: Serving, ready: Callable[..., Any]
) -> dict:
    """On one warm server: the enqueue-to-start latency of single tasks (20 of them, one at a
    time), then a chain of ``hops`` steps that each stamp their start; a hop is the time from
    one step's start to the next one's (the step's own run, its result's way back, the release
    of the next step, its claim and hand-out)."""
    q = Queue(url)
    try:
        with serving() as serve:
            ready(url, serve)
            single = []
            for _ in range(20):
                ref = q.add_task(bench_tasks.stamp)
                committed = time.time()
                single.append((ref.result(timeout=10) - committed) * 1000)
            links = [step(bench_tasks.stamp_hop) for _ in range(hops - 1)]
            wf = q.add_workflow(chain(step(bench_tasks.stamp), *links))
            wf.result(timeout=120)
        with psycopg.connect(url) as conn:
            rows = dict(conn.execute(sql["workflow_results"], {"id": wf.workflow_id}).fetchall())
    finally:
        q.close()
    starts = [float(rows[i]) for i in wf.task_ids]
    hop_ms = [(b - a) * 1000 for a, b in zip(starts, starts[1:], strict=False)]
    single_ms, per_hop = statistics.median(single), statistics.median(hop_ms)
    return {"hops": hops, "single_enqueue_to_start_ms": round(single_ms, 2),
            "hop_ms_p50": round(per_hop, 2), "hop_ms_max": round(max(hop_ms), 2),
            "hop_over_single_ms": round(per_hop - single_ms, 2)}  # fmt: skip
