"""Operators see and steer the fleet's schedules from a shell that has only the database URL
(issue 26, SPEC §14): no config file, no --import, not even the tasks' code."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import task_row, wait_for
from tests.e2e.test_flow_control import _post
from tests.e2e.test_schedules import CONFIG  # tick: every second, tests.tasks:add(1, 2)
from tests.integration.test_cli import as_json, one_line, run


def shell(tmp_path: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``qsup ARGS`` run in an empty directory with only QUEUE_DATABASE_URL set."""
    return run(list(args), db_url, cwd=tmp_path / "shell")


def ticks(conn: Any) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM queued_tasks WHERE unique_key LIKE 'schedule:tick:%'"
        ).fetchone()[0]
    )


@pytest.mark.timeout(120)
def test_schedule_commands_work_from_a_shell_with_only_the_url(
    conn, db_url, start_server, tmp_path
):
    (tmp_path / "shell").mkdir()
    code = subprocess.run(
        [sys.executable, "-c", "import tests.tasks"], cwd=tmp_path / "shell", capture_output=True
    )
    assert code.returncode != 0  # the shell cannot import the task: it is not needed
    config = tmp_path / "queue.toml"
    config.write_text(CONFIG)
    server = start_server("--workers", "1", "--config", str(config))
    server_id = int(conn.execute("SELECT max(id) FROM queued_task_workers").fetchone()[0])
    wait_for(lambda: ticks(conn) >= 1, what="a tick")

    def listed() -> dict[str, Any]:
        (row,) = as_json(shell(tmp_path, db_url, "schedule", "list", "--json"))
        return row  # type: ignore[no-any-return]

    row = wait_for(lambda: (found := listed())["last_fire"] is not None and found)
    assert (row["name"], row["cron"], row["task"], row["paused"]) == (
        "tick", "* * * * * *", "tests.tasks:add", False
    )  # fmt: skip
    assert [(s["id"], s["running"]) for s in row["servers"]] == [(server_id, True)]
    assert row["next_fire"] > row["last_fire"]
    human = shell(tmp_path, db_url, "schedule", "list")
    assert human.returncode == 0 and "tick" in human.stdout and f"{server_id} (" in human.stdout

    paused = shell(tmp_path, db_url, "schedule", "pause", "tick", "--json")
    assert as_json(paused) == {"schedule": "tick", "paused": True}
    time.sleep(1.2)  # a tick being fired as we paused may still land
    before = ticks(conn)
    time.sleep(2.5)  # what is tested: no tick fires on the server while paused
    assert ticks(conn) == before
    assert listed()["paused"] is True
    assert shell(tmp_path, db_url, "schedule", "resume", "tick").returncode == 0
    wait_for(lambda: ticks(conn) > before, what="ticks again after the resume")

    ran = as_json(shell(tmp_path, db_url, "schedule", "run", "tick", "--json"))
    task_id = uuid.UUID(ran["id"])
    wait_for(lambda: task_row(conn, task_id)["state"] == "completed", what="the run")
    assert task_row(conn, task_id)["result"] == 3  # run on the server, from the template

    unknown = shell(tmp_path, db_url, "schedule", "pause", "nope")
    assert unknown.returncode == 2
    assert "no such schedule" in one_line(unknown)
    assert shell(tmp_path, db_url, "schedule", "run", "nope").returncode == 2

    config.write_text("")  # a reload without the schedule: this server no longer declares it
    server.signal(signal.SIGHUP)
    wait_for(
        lambda: as_json(shell(tmp_path, db_url, "schedule", "list", "--json")) == [],
        what="the schedule to leave the list",
    )


@pytest.mark.timeout(120)
def test_a_stopped_servers_schedules_stay_listed_and_any_http_server_steers_them(
    conn, db_url, start_server, tmp_path
):
    (tmp_path / "shell").mkdir()
    config = tmp_path / "queue.toml"
    config.write_text(CONFIG)
    server = start_server("--workers", "1", "--config", str(config))
    wait_for(lambda: ticks(conn) >= 1, what="a tick")
    server.stop()
    (row,) = as_json(shell(tmp_path, db_url, "schedule", "list", "--json"))
    assert [s["running"] for s in row["servers"]] == [False]
    assert "stopped" in shell(tmp_path, db_url, "schedule", "list").stdout
    # a server without the schedule in its configuration lists and pauses it over HTTP
    other = start_server("--workers", "1", http=True, env={"QSUP_ADMIN_TOKEN": "s3cret"})
    with urllib.request.urlopen(other.url("/api/schedules"), timeout=10) as response:
        (listed,) = json.load(response)["schedules"]
    assert (listed["name"], listed["task"]) == ("tick", "tests.tasks:add")
    assert _post(other.url("/api/schedules/tick/pause"), "s3cret") == 200
    assert _post(other.url("/api/schedules/nope/pause"), "s3cret") == 404
    assert listed_paused(tmp_path, db_url) is True


def listed_paused(tmp_path: Path, db_url: str) -> bool:
    (row,) = as_json(shell(tmp_path, db_url, "schedule", "list", "--json"))
    return bool(row["paused"])
