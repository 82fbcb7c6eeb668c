"""Two real servers with the same every-second schedule: one task per tick, pause stops both."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.conftest import wait_for
from tests.servers import ROOT

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


def scheduled(conn, name: str, state: str | None = None) -> int:
    sql = "SELECT count(*) FROM queued_tasks WHERE unique_key LIKE %s"
    params: list[str] = [f"schedule:{name}:%"]
    if state:
        sql += " AND state = %s"
        params.append(state)
    return conn.execute(sql, params).fetchone()[0]


def test_python_registered_schedule_fires_without_any_toml(conn, start_server):
    """``qsup.scheduler.schedule`` in an --import module, no config file at all."""
    server = start_server("--workers", "1", "--import", "tests.py_schedule")
    wait_for(lambda: scheduled(conn, "py-tick", "completed") >= 2, what="two Python ticks")
    result = conn.execute(
        "SELECT result FROM queued_tasks WHERE unique_key LIKE 'schedule:py-tick:%'"
        " AND state = 'completed' LIMIT 1"
    ).fetchone()[0]
    assert result == 42
    assert "Traceback" not in server.output()


def test_sighup_with_a_bad_cron_keeps_the_old_schedules(conn, start_server, tmp_path):
    config = tmp_path / "queue.toml"
    config.write_text(CONFIG)
    server = start_server("--workers", "1", "--config", str(config))
    wait_for(lambda: scheduled(conn, "tick") >= 1, what="a first tick")
    config.write_text(CONFIG.replace('"* * * * * *"', '"61 * * * *"'))
    server.signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in server.output(), what="the refusal")
    before = scheduled(conn, "tick")
    wait_for(lambda: scheduled(conn, "tick") >= before + 2, what="two more ticks of the old cron")
    log = server.output()
    refusals = [line for line in log.splitlines() if "configuration not reloaded" in line]
    assert len(refusals) == 1, refusals
    assert "schedule 'tick': cron = '61 * * * *'" in refusals[0]
    assert f"{config}:4" in refusals[0]
    assert "Traceback" not in log
    assert server.proc.poll() is None
