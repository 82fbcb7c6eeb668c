"""``qsup queue stats`` and the stats of ``/api/stats``: throughput, run time and cost by task
name from the per-minute series (``qsup.series``), counts from ``qsup.counts``; a few rows
and capped index reads, whatever the task table holds."""

from __future__ import annotations

from typing import Any

import psycopg

from qsup import counts, series

Conn = psycopg.Connection[Any]
HOUR = 3600
RANKED = 10  # task names in each ranking


def queue_stats(conn: Conn, found: list[counts.Count] | None = None) -> dict[str, Any]:
    """The last hour (whole minutes, the current one included) by task name, and counts by
    state (``estimated_states``: the states counted from the planner's statistics; ``found``:
    counts already read)."""
    tasks = series.by_task(conn, HOUR)
    totals, estimated = counts.by_state(counts.task_counts(conn) if found is None else found)
    last_minute = sum(t["completed_last_minute"] for t in tasks)
    last_hour = sum(t["completed"] for t in tasks)
    return {
        "completed_last_minute": last_minute,
        "completed_last_hour": last_hour,
        "throughput_per_minute_last_minute": float(last_minute),
        "throughput_per_minute_last_hour": last_hour / 60.0,
        "failed_last_hour": sum(t["failed"] for t in tasks),
        "retried_last_hour": sum(t["retried"] for t in tasks),
        "durations_by_task": [durations(t) for t in tasks if t["completed"]],
        "failures_by_task": [
            {"name": t["name"], "failed": t["failed"]} for t in tasks if t["failed"]
        ],
        "tasks_by_state": totals,
        "estimated": bool(estimated),
        "estimated_states": estimated,
        **rank_usage([usage(t) for t in tasks if t["measured"]]),
    }


def durations(task: dict[str, Any]) -> dict[str, Any]:
    """Run time of a task name's finished tasks: average, and p50/p95 from the digest."""
    timed = sum(task["run_buckets"])
    return {
        "name": task["name"],
        "completed": task["completed"],
        "avg_seconds": task["run_seconds"] / timed if timed else None,
        "p50_seconds": series.quantile(task["run_buckets"], 0.5),
        "p95_seconds": series.quantile(task["run_buckets"], 0.95),
        "wait_p95_seconds": series.quantile(task["wait_buckets"], 0.95),
    }


def usage(task: dict[str, Any]) -> dict[str, Any]:
    runs = task["measured"]
    return {
        "task": task["name"],
        "runs": runs,
        "cpu_seconds": task["cpu_seconds"],
        "avg_cpu_seconds": task["cpu_seconds"] / runs,
        "peak_memory_bytes": task["peak_memory_bytes"],
        "avg_memory_growth_bytes": task["memory_growth_bytes"] / runs,
        "memory_growth_bytes": task["memory_growth_bytes"],
    }


def rank_usage(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The task names costing most: by total CPU, by highest peak memory, and by memory
    growth per run (the leak suspects), largest first."""
    keys = {
        "cpu": "cpu_seconds",
        "peak_memory": "peak_memory_bytes",
        "memory_growth": "avg_memory_growth_bytes",
    }
    return {
        ranking: sorted(rows, key=lambda r: (-(r[key] or 0), r["task"]))[:RANKED]
        for ranking, key in keys.items()
    }


def throughput(conn: Conn, minutes: int) -> list[dict[str, Any]]:
    """Tasks finished per minute over the last ``minutes``, by final state (``/api/stats``)."""
    points = series.read(conn, 60, seconds=minutes * 60)
    by_minute: dict[tuple[Any, str], int] = {}
    for p in points:
        for state in ("completed", "failed"):
            if p[state]:
                key = (p["at"], state)
                by_minute[key] = by_minute.get(key, 0) + p[state]
    return [{"minute": at, "state": state, "n": n} for (at, state), n in by_minute.items()]
