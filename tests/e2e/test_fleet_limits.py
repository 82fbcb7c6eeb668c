"""A fleet cannot silently lose its limits or pauses (issue 26, SPEC §14): a server whose file
has no [limits] changes nothing in force, a differing file is a WARNING shown by `qsup queue
limits` and /metrics, and only an explicit act changes what is in force. Real servers."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import tasks
from tests.conftest import task_states, wait_for
from tests.e2e.test_flow_control import most_at_once, qsup, spans
from tests.e2e.test_tracing import events as log_events
from tests.servers import Server

JSON_LOG = {"QSUP_LOG_FORMAT": "json"}


def events(server: Server, name: str) -> list[dict[str, Any]]:
    """The JSON log records of ``server`` with event ``name``: ``{level, message, ...}``."""
    return [e for e in log_events(server.log_path) if e["event"] == name]


def wait_event(server: Server, name: str, count: int = 1) -> list[dict[str, Any]]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: len(found := events(server, name)) >= count and found, what=f"event {name}"
    )


def limits_of(db_url: str) -> dict[str, dict[str, Any]]:
    done = qsup("queue", "limits", "--json", db_url=db_url)
    assert done.returncode == 0, done.stderr
    return {row["queue"]: row for row in json.loads(done.stdout)}


def config(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_pay(queue: Any, conn: Any, log: Path, count: int, done: int) -> None:
    for _ in range(count):
        queue.add_task(tasks.span, str(log), "pay", 0.3, _queue="pay")
    wait_for(lambda: task_states(conn) == {"completed": done}, timeout=60, what="every task")


@pytest.mark.timeout(120)
def test_a_server_without_limits_changes_nothing_in_force_at_start_or_reload(
    queue, conn, start_server, db_url, tmp_path
):
    limited = config(tmp_path, "a.toml", "[limits.pay]\nconcurrency = 2\n")
    first = start_server("--workers", "3", "--config", str(limited), env=JSON_LOG)
    wait_event(first, "limits_adopted")
    # the forgotten --config: ./config/queue.toml of the repository, which has no [limits]
    second = start_server("--workers", "3", env=JSON_LOG)
    wait_event(second, "limits_none")
    log = tmp_path / "spans"
    run_pay(queue, conn, log, 12, 12)
    assert most_at_once(spans(log)["pay"]) == 2  # both servers kept to it
    row = limits_of(db_url)["pay"]
    assert (row["concurrency"], row["source"]) == (2, {"concurrency": "file"})
    assert str(limited) in row["file_source"]
    # a reload without [limits], on either server, changes nothing either
    limited.write_text("")
    for server in (first, second):
        server.signal(signal.SIGHUP)
    wait_event(first, "limits_none")
    wait_event(second, "limits_none", 2)
    run_pay(queue, conn, log, 12, 24)
    assert most_at_once(spans(log)["pay"]) == 2
    assert limits_of(db_url)["pay"]["concurrency"] == 2


@pytest.mark.timeout(120)
def test_a_differing_file_warns_shows_everywhere_and_only_an_explicit_act_wins(
    queue, conn, start_server, db_url, tmp_path
):
    ours = config(tmp_path, "a.toml", "[limits.pay]\nconcurrency = 2\n")
    theirs = config(tmp_path, "b.toml", '[limits.pay]\nconcurrency = 5\nrate = "9/second"\n')
    start_server("--workers", "1", "--config", str(ours), env=JSON_LOG)
    wait_for(lambda: "pay" in limits_of(db_url), what="the first file's limits")
    other = start_server("--workers", "1", "--config", str(theirs), env=JSON_LOG, http=True)
    (warning,) = wait_event(other, "limits_disagree")
    assert warning["level"] == "WARNING"
    message = warning["message"]
    for part in ("pay", "concurrency=5, rate=9/second", "concurrency=2", str(ours), str(theirs)):
        assert part in message
    row = limits_of(db_url)["pay"]
    assert (row["concurrency"], row["rate"]) == (2, None)  # nothing changed in force
    (differs,) = row["file_differs"]
    assert (differs["concurrency"], differs["rate"]) == (5, "9/second")
    assert str(theirs) in differs["source"]
    human = qsup("queue", "limits", db_url=db_url)
    assert f"server {differs['server']}: concurrency=5, rate=9/second" in human.stdout
    with urllib.request.urlopen(other.url("/metrics"), timeout=10) as response:
        metrics = response.read().decode()
    assert 'qsup_queue_limits_file_differs{queue="pay"} 1.0' in metrics
    # a reload with a file that agrees ends the difference
    theirs.write_text("[limits.pay]\nconcurrency = 2\n")
    other.signal(signal.SIGHUP)
    wait_for(lambda: limits_of(db_url)["pay"]["file_differs"] == [], what="the agreement")
    # the explicit act: --apply makes a file's limits those in force
    newer = config(tmp_path, "c.toml", "[limits.pay]\nconcurrency = 1\n")
    applied = qsup("queue", "limits", "--apply", db_url=db_url, config=newer)
    assert applied.returncode == 0, applied.stderr
    row = limits_of(db_url)["pay"]
    assert row["concurrency"] == 1 and "--apply" in row["file_source"]
    assert len(row["file_differs"]) == 2  # both running servers' files now say 2
    log = tmp_path / "spans"
    run_pay(queue, conn, log, 6, 6)
    assert most_at_once(spans(log)["pay"]) == 1


def test_apply_refuses_a_file_without_limits(db_url, tmp_path):
    empty = config(tmp_path, "empty.toml", "")
    refused = qsup("queue", "limits", "--apply", db_url=db_url, config=empty)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert "no [limits.QUEUE] table" in refused.stderr


@pytest.mark.timeout(120)
def test_no_start_or_reload_clears_a_pause(queue, conn, start_server, db_url, tmp_path):
    assert qsup("queue", "pause", "pay", db_url=db_url).returncode == 0
    limited = config(tmp_path, "a.toml", "[limits.pay]\nconcurrency = 2\n")
    held = queue.add_task(tasks.add, 1, 1, _queue="pay")
    server = start_server("--workers", "1", "--config", str(limited), env=JSON_LOG)
    wait_event(server, "limits_adopted")
    queue.add_task(tasks.add, 1, 2).result(timeout=20)  # the server claims
    server.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in server.output(), what="the reload")
    start_server("--workers", "1", env=JSON_LOG)  # and one without [limits]
    queue.add_task(tasks.add, 1, 3).result(timeout=20)
    queue.add_task(tasks.add, 1, 4).result(timeout=20)
    row = limits_of(db_url)["pay"]
    assert (row["paused"], row["concurrency"]) == (True, 2)
    assert conn.execute(
        "SELECT state FROM queued_tasks WHERE id = %s", (held.task_id,)
    ).fetchone() == ("enqueued",)
