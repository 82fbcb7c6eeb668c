"""The real ``qsup`` command in a subprocess: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import tasks

ROOT = Path(__file__).resolve().parents[2]


def run(
    args: list[str],
    db_url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUEUE_", "QSUP_")) and k != "DATABASE_URL"
    }
    full_env["COLUMNS"] = "200"
    if db_url:
        full_env["QUEUE_DATABASE_URL"] = db_url
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "from qsup.cli import main; main()", *args],
        cwd=cwd or ROOT,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- exit codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["queue", "status", "--bogus"],
        ["serve", "--workers", "abc"],
        ["task", "show"],
        ["queue", "retry"],
    ],
)
def test_bad_usage_exits_2_with_one_line(args, tmp_path):
    result = run(args, cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result).startswith("qsup: error:")


def test_help_lists_every_command_and_an_unknown_one_is_exit_2(tmp_path):
    """Only the command being run is built (start-up); help and errors still see them all."""
    listing = run(["--help"], cwd=tmp_path)
    assert listing.returncode == 0
    for name in ("serve", "enqueue", "queue", "task", "db", "config", "schedule"):
        assert f" {name} " in listing.stdout, name
    serve_help = run(["serve", "--help"], cwd=tmp_path)
    assert serve_help.returncode == 0 and "--workers" in serve_help.stdout
    unknown = run(["sevre"], cwd=tmp_path)
    assert unknown.returncode == 2
    assert one_line(unknown).startswith(
        "qsup: error: No such command 'sevre'. Did you mean 'serve'"
    )


@pytest.mark.parametrize(
    "toml, env, needle",
    [
        ("max_retrys = 1\n", {}, "did you mean 'max_retries'"),
        ("max_workers = [\n", {}, "malformed TOML"),
        ("task_timeout = -3\n", {}, "task_timeout"),
        ("", {"QUEUE_USE_POSTGRESQL_NOTIFY": "sometimes"}, "QUEUE_USE_POSTGRESQL_NOTIFY"),
        ("", {"QUEUE_MAX_WORKERS": "0"}, "env QUEUE_MAX_WORKERS"),
        ('[[schedules]]\nname = "x"\ncron = "every day"\ntask = "m:f"\n', {}, "schedule 'x': cron"),
    ],
)
@pytest.mark.parametrize("command", [["config", "show"], ["queue", "stats"]])
def test_bad_config_exits_2_with_one_line(tmp_path, toml, env, needle, command):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "queue.toml").write_text(toml)
    if command == ["queue", "stats"] and "schedules" in toml:
        command = ["schedule", "list"]
    result = run(
        command, env={"QUEUE_DATABASE_URL": "postgresql://127.0.0.1:1/x", **env}, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert needle in one_line(result)


def test_unreachable_database_exits_3_naming_the_host(tmp_path):
    result = run(["queue", "stats", "--database-url", "postgresql://127.0.0.1:1/x"], cwd=tmp_path)
    assert result.returncode == 3
    assert "127.0.0.1:1" in one_line(result)


def test_version():
    result = run(["--version"])
    assert result.returncode == 0
    assert result.stdout.startswith("qsup ")


# --- config --------------------------------------------------------------------------------


def test_config_show_names_flag_env_and_file_line(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text("# hello\nmax_retries = 9\n")
    result = run(
        ["config", "show", "--json", "--config", str(path), "--workers", "3"],
        env={"QUEUE_TASK_TIMEOUT": "12.5"},
        cwd=tmp_path,
    )
    report = as_json(result)
    assert report["max_workers"] == {"value": 3, "source": "flag --workers"}
    assert report["task_timeout"] == {"value": 12.5, "source": "env QUEUE_TASK_TIMEOUT"}
    assert report["max_retries"] == {"value": 9, "source": f"file {path}:2"}
    assert report["polling_interval"]["source"] == "default"
    table = run(["config", "show", "--config", str(path)], cwd=tmp_path)
    assert table.returncode == 0
    assert f"file {path}:2" in table.stdout


def test_config_show_lists_the_limits_tables_with_their_lines(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(
        'max_retries = 2\n\n[limits.payments]\nconcurrency = 5\nrate = "100/minute"\n'
        "\n[limits.mail]\nkey_concurrency = 1\n"
    )
    report = as_json(run(["config", "show", "--json", "--config", str(path)], cwd=tmp_path))
    assert report["limits.payments"] == {
        "value": {"concurrency": 5, "rate": "100/minute", "key_concurrency": None},
        "source": f"file {path}:3",
    }
    assert report["limits.mail"] == {
        "value": {"concurrency": None, "rate": None, "key_concurrency": 1},
        "source": f"file {path}:7",
    }
    table = run(["config", "show", "--config", str(path)], cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith("limits.")]
    assert rows == [
        ["limits.mail", "key_concurrency=1", "file", f"{path}:7"],
        ["limits.payments", "concurrency=5,", "rate=100/minute", "file", f"{path}:3"],
    ]
    plain = as_json(run(["config", "show", "--json", "--config", os.devnull], cwd=tmp_path))
    assert not [key for key in plain if key.startswith("limits")]


def test_config_example_matches_committed_file():
    result = run(["config", "example"])
    assert result.returncode == 0
    assert result.stdout == (ROOT / "config" / "queue.toml").read_text()


# --- queue and task commands ---------------------------------------------------------------


def test_queue_clear_refuses_without_terminal_then_clears_with_yes(queue, conn, db_url):
    queue.add_task(tasks.noop)
    queue.add_task(tasks.noop, _queue="other")
    refused = run(["queue", "clear"], db_url)
    assert refused.returncode == 2
    assert "--yes" in one_line(refused)
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone() == (2,)
    cleared = as_json(run(["queue", "clear", "--yes", "--queue", "other", "--json"], db_url))
    assert cleared == {"deleted": 1}
    assert as_json(run(["queue", "clear", "-y", "--state", "enqueued", "--json"], db_url)) == {
        "deleted": 1
    }


def test_queue_retry_stats_servers(queue, conn, db_url):
    ref = queue.add_task(tasks.always_fail)
    conn.execute(
        "UPDATE queued_tasks SET state = 'failed', error_message = 'boom' WHERE id = %s",
        (ref.task_id,),
    )
    retried = as_json(run(["queue", "retry", "--all-failed", "--yes", "--json"], db_url))
    assert retried == {"retried": 1, "not_retried": []}
    stats = as_json(run(["queue", "stats", "--json"], db_url))
    assert stats["tasks_by_state"]["enqueued"] == 1
    human = run(["queue", "stats"], db_url)
    assert human.returncode == 0 and "completed last minute" in human.stdout
    conn.execute(
        "INSERT INTO queued_task_workers (server_name, hostname, pid) VALUES ('srv-1', 'h', 1)"
    )
    servers = as_json(run(["queue", "servers", "--json"], db_url))
    assert [s["server_name"] for s in servers] == ["srv-1"]
    assert "srv-1" in run(["queue", "servers"], db_url).stdout


def test_task_cancel_logs_retry_with_id_prefix(queue, conn, db_url):
    ref = queue.add_task(tasks.noop)
    prefix = str(ref.task_id)[:8]
    cancelled = as_json(run(["task", "cancel", prefix, "--json"], db_url))
    assert cancelled == {"id": str(ref.task_id), "state": "cancelled"}
    again = run(["task", "cancel", prefix], db_url)
    assert again.returncode == 1
    assert "already cancelled" in one_line(again)
    logs = as_json(run(["task", "logs", prefix, "--json"], db_url))
    assert [entry["type"] for entry in logs] == ["cancelled"]
    assert "cancelled by operator" in run(["task", "logs", prefix], db_url).stdout
    retried = as_json(run(["task", "retry", str(ref.task_id), "--json"], db_url))
    assert retried["state"] == "enqueued"
    refused = run(["task", "retry", prefix], db_url)
    assert refused.returncode == 1
    assert "is enqueued" in one_line(refused)
    missing = run(["task", "logs", str(uuid.uuid4())], db_url)
    assert missing.returncode == 1
    assert "no task" in one_line(missing)


def test_enqueue_headers_and_concurrency_key_in_task_show(conn, db_url):
    args = ["enqueue", "tests.tasks:add", "1", "2", "--header", "request_id=r-1"]
    args += ["--header", "empty=", "--header", "request_id=r-2", "--concurrency-key", "tenant:7"]
    task_id = as_json(run([*args, "--json"], db_url))["id"]
    headers = {"request_id": "r-2", "empty": ""}  # a repeated key: the last wins (jsonb sorts)
    row = conn.execute(
        "SELECT headers, concurrency_key FROM queued_tasks WHERE id = %s", (task_id,)
    ).fetchone()
    assert row == (headers, "tenant:7")
    shown = as_json(run(["task", "show", task_id, "--json"], db_url))
    assert shown["headers"] == headers and shown["concurrency_key"] == "tenant:7"
    human = run(["task", "show", task_id[:8]], db_url)
    assert human.returncode == 0, human.stderr
    assert '            headers: {"empty":"","request_id":"r-2"}' in human.stdout.splitlines()
    assert "    concurrency_key: tenant:7" in human.stdout.splitlines()
    plain = as_json(run(["enqueue", "tests.tasks:noop", "--json"], db_url))["id"]
    bare = as_json(run(["task", "show", plain, "--json"], db_url))
    assert bare["headers"] is None and bare["concurrency_key"] is None


# --- schedules -----------------------------------------------------------------------------


def test_schedule_list_pause_resume_run(conn, db_url, tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(
        '[[schedules]]\nname = "hourly"\ncron = "0 * * * *"\n'
        'task = "tests.tasks:add"\nargs = [2, 3]\n'
    )
    base = ["--config", str(path)]
    listed = as_json(run(["schedule", "list", "--json", *base], db_url))
    assert [(s["name"], s["paused"], s["cron"]) for s in listed] == [("hourly", False, "0 * * * *")]
    assert listed[0]["next_fire"] is not None
    assert run(["schedule", "pause", "hourly", *base], db_url).returncode == 0
    assert as_json(run(["schedule", "list", "--json", *base], db_url))[0]["paused"] is True
    assert "paused" in run(["schedule", "list", *base], db_url).stdout
    assert run(["schedule", "resume", "hourly", *base], db_url).returncode == 0
    assert as_json(run(["schedule", "list", "--json", *base], db_url))[0]["paused"] is False
    ran = as_json(run(["schedule", "run", "hourly", "--json", *base], db_url))
    found = conn.execute(
        "SELECT name, args FROM queued_tasks WHERE id = %s", (uuid.UUID(ran["id"]),)
    ).fetchone()
    assert found == ("tests.tasks:add", [2, 3])
    unknown = run(["schedule", "pause", "nope", *base], db_url)
    assert unknown.returncode == 2
    assert "no such schedule" in one_line(unknown)
