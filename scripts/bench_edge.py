"""The ``edge`` scenario of ``scripts/bench.py`` (SPEC §13): what the worker's per-task
accounting costs (a micro-benchmark of :class:`qsup.worker.meter.Meter` in this process), and
how long a SIGKILLed server's running task takes to run again on another server."""

from __future__ import annotations

import os
import signal
import time
import timeit
from collections.abc import Callable
from typing import Any

import bench_tasks
import psycopg

from qsup import Queue
from qsup.worker.meter import Meter

RESCUE_TASK_SECONDS = 30.0  # long enough that only a rescue can start it again in time


def meter_cost(jobs: int = 50_000, repeats: int = 5) -> dict[str, Any]:
    """Microseconds per job of the meter (start + stop), best of ``repeats``: for jobs under
    a millisecond (most tiny tasks) and longer ones, beside an empty call for scale."""
    meter = Meter()

    def cost(seconds: float) -> float:
        def one() -> None:
            meter.stop(meter.start(), seconds)

        return round(min(timeit.repeat(one, number=jobs, repeat=repeats)) / jobs * 1e6, 2)

    empty = min(timeit.repeat(lambda: None, number=jobs, repeat=repeats)) / jobs
    return {
        "us_per_brief_task": cost(0.0),
        "us_per_task": cost(0.01),
        "empty_call_us": round(empty * 1e6, 3),
        "budget_us": 5.0,
        "load_average": os.getloadavg()[0],
    }


def rescue_seconds(url: str, serve: Callable[[], Any], check_every: float = 0.05) -> float:
    """Two servers from ``serve()`` (started, with ``.pid`` and ``.stop()``); the first runs a
    long task and is SIGKILLed: seconds until the task has started again on the second."""
    queue = Queue(url)
    servers = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:

            def running_servers() -> int:
                sql = "SELECT count(*) FROM queued_task_workers WHERE is_running"
                return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]

            def started_by() -> int | None:
                row = conn.execute(
                    "SELECT server_id FROM queued_tasks WHERE id = %s AND state = 'running'",
                    (ref.task_id,),
                ).fetchone()
                return row[0] if row else None

            servers.append(serve())
            _wait(lambda: running_servers() == 1, 30.0, check_every)
            ref = queue.add_task(bench_tasks.sleep_sync, RESCUE_TASK_SECONDS)
            owner = _wait(started_by, 30.0, check_every)
            servers.append(serve())
            _wait(lambda: running_servers() == 2, 30.0, check_every)
            os.kill(servers[0].pid, signal.SIGKILL)
            killed = time.monotonic()
            _wait(lambda: (started_by() or owner) != owner, 60.0, check_every)
            return round(time.monotonic() - killed, 2)
    finally:
        for server in servers:
            server.stop()
        queue.close()


def _wait(predicate: Callable[[], Any], timeout: float, every: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError("the rescue scenario timed out")
        time.sleep(every)
    return value
