"""Flood test: enqueue 100,000 tasks while a server drains them; report the supervisor's RSS.

    python scripts/flood.py [--tasks 100000] [--database-url URL]

Prints one JSON document: RSS of the supervisor before, during (max) and after the flood, and
the time to drain. Starts an embedded PostgreSQL in a temp dir unless --database-url is given;
stops every process it started, by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from qsup import Queue  # noqa: E402
from qsup.db.migrate import migrate  # noqa: E402
from qsup.sql import parse_queries  # noqa: E402

Q = parse_queries((ROOT / "scripts" / "bench.sql").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or _embedded(tmp)
        print(json.dumps(flood(url, args.tasks), indent=2))


def _embedded(tmp: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from qsup.db.embedded import embedded_url

        return embedded_url(tmp)


def flood(url: str, count: int) -> dict[str, object]:
    import bench_tasks

    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    env = {**os.environ, "QUEUE_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "scripts")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qsup",
            "serve",
            "--workers",
            "2",
            "--no-http",
            "--import",
            "bench_tasks",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    samples: list[int] = []
    stop = threading.Event()
    try:
        supervisor = psutil.Process(server.pid)
        time.sleep(1.0)
        before = supervisor.memory_info().rss

        def sample() -> None:
            while not stop.wait(0.2):
                samples.append(supervisor.memory_info().rss)

        threading.Thread(target=sample, daemon=True).start()
        queue = Queue(url)
        started = time.monotonic()
        for _ in range(count // 1000):
            queue.add_tasks([(bench_tasks.noop, (), {}) for _ in range(1000)])
        enqueued = time.monotonic() - started
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute(Q["remaining"]).fetchone()[0] > 0:
                time.sleep(0.2)
        drained = time.monotonic() - started
        queue.close()
        stop.set()
        after = supervisor.memory_info().rss
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    mb = 2**20
    return {
        "tasks": count,
        "enqueue_seconds": round(enqueued, 1),
        "drain_seconds": round(drained, 1),
        "supervisor_rss_mb": {
            "before": round(before / mb, 1),
            "max_during": round(max(samples) / mb, 1),
            "after": round(after / mb, 1),
        },
    }


if __name__ == "__main__":
    main()
