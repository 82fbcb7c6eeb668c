"""Two real servers with the same every-second schedule: one task per tick, pause stops both."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import ROOT, wait_for

CONFIG = """
[[schedules]]
name = "tick"
cron = "* * * * * *"
task = "tests.tasks:add"
args = [1, 2]
"""


def test_every_second_schedule_fires_once_per_tick_across_two_servers(
    db_url, conn, start_server, tmp_path
):
    config = tmp_path / "queue.toml"
    config.write_text(CONFIG)
    start_server("--workers", "1", "--config", str(config))
    start_server("--workers", "1", "--config", str(config))
    wait_for(
        lambda: conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] >= 4,
        what="four ticks",
    )
    rows = conn.execute(
        "SELECT unique_key, count(*) FROM queued_tasks GROUP BY unique_key"
    ).fetchall()
    assert len(rows) >= 3, rows
    assert all(n == 1 for _, n in rows), rows
    ticks = sorted(k for k, _ in rows)
    assert all(k.startswith("schedule:tick:") for k in ticks)

    paused = subprocess.run(
        [
            sys.executable,
            "-m",
            "qsup",
            "schedule",
            "pause",
            "tick",
            "--config",
            str(config),
            "--database-url",
            db_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert paused.returncode == 0, paused.stderr
    time.sleep(1.2)  # a tick already being fired when we paused may still land
    count = conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0]
    time.sleep(2.5)
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == count
    wait_for(
        lambda: (
            conn.execute("SELECT count(*) FROM queued_tasks WHERE state <> 'completed'").fetchone()[
                0
            ]
            == 0
        ),
        what="scheduled tasks to complete",
    )
