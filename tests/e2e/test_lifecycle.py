"""Reload, start-up crashes, idle scaling: the supervisor's life cycle with real processes."""

from __future__ import annotations

import re
import signal
import time

from tests import tasks
from tests.conftest import task_states, wait_for


def test_sighup_reloads_config_and_replaces_workers_without_dropping_tasks(
    queue, conn, start_server, tmp_path
):
    config = tmp_path / "queue.toml"
    config.write_text("max_workers = 1\nmin_workers = 1\n")
    server = start_server("--config", str(config))
    (first,) = server.wait_workers(1)
    refs = queue.add_tasks([(tasks.record, (str(tmp_path), f"h{i}", 0.2), {}) for i in range(6)])
    wait_for(lambda: task_states(conn).get("running", 0) == 1, what="a running task")
    config.write_text("max_workers = 2\nmin_workers = 2\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in server.output(), what="the reload")
    wait_for(lambda: task_states(conn).get("completed", 0) == len(refs), what="all tasks")
    workers = server.wait_workers(2)
    assert first.pid not in {w.pid for w in workers}
    assert len(list(tmp_path.glob("h*"))) == len(refs)  # each ran (none dropped)


def test_bad_config_on_sighup_keeps_the_old_one(queue, conn, start_server, tmp_path):
    config = tmp_path / "queue.toml"
    config.write_text("max_workers = 1\n")
    server = start_server("--config", str(config))
    server.wait_workers(1)
    config.write_text("max_workers = 0\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in server.output(), what="the refusal")
    assert queue.add_task(tasks.add, 1, 1).result(timeout=20) == 2


def test_workers_dying_at_start_up_are_restarted_with_backoff(start_server):
    server = start_server("--workers", "1", "--import", "tests.boot_crash")
    wait_for(
        lambda: server.output().count("died at start-up") >= 3,
        timeout=20,
        what="three start-up deaths",
    )
    delays = [float(d) for d in re.findall(r"next start in ([0-9.]+) s", server.output())]
    assert delays[:3] == sorted(delays[:3]) and delays[2] > delays[0], delays
    assert "exit code 3" in server.output()
    started = server.output().count("died at start-up")
    time.sleep(1.0)  # with backoff, a second brings at most one more attempt, not hundreds
    assert server.output().count("died at start-up") - started <= 2
    assert server.proc.poll() is None


def test_idle_workers_retire_down_to_the_minimum(queue, conn, start_server, tmp_path):
    server = start_server(
        "--workers", "3", "--min-workers", "1", env={"QUEUE_WORKER_IDLE_TIMEOUT": "0.5"}
    )
    queue.add_tasks([(tasks.record, (str(tmp_path), f"s{i}", 0.3), {}) for i in range(9)])
    server.wait_workers(3)  # scaled up under the burst
    wait_for(lambda: task_states(conn).get("completed", 0) == 9, what="the burst")
    server.wait_workers(1)  # and back down after the idle timeout
    assert "idle for" in server.output()


def test_an_idle_server_makes_one_query_per_interval(conn, start_server):
    start_server(
        "--workers",
        "2",
        "--min-workers",
        "2",
        env={"QUEUE_HEARTBEAT_INTERVAL": "1", "QUEUE_FALLBACK_POLLING_INTERVAL": "1"},
    )
    time.sleep(2)  # let start-up settle (migrations, first claim)

    # The server's own statements: a new query_start in one of its sessions, sampled every
    # 20 ms (beats are a second apart). The database's transaction counter would also count
    # autovacuum's visits, which made this test fail now and then. The pruner's rounds have a
    # cadence of their own (its first, 3 s after start, falls in this window; then one a
    # minute): tests/e2e/test_idle_statements.py counts every statement over 20 s.
    def statement_starts() -> set[tuple[int, object]]:
        return set(
            conn.execute(
                "SELECT pid, query_start FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'qsup-%' AND application_name NOT LIKE 'qsup-pruner-%'"
                " AND query_start IS NOT NULL"
            ).fetchall()
        )

    seen = statement_starts()
    before = set(seen)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        seen |= statement_starts()
        time.sleep(0.02)
    made = len(seen - before)
    assert 3 <= made <= 5 + 1, made  # one beat a second


def test_sighup_listens_again_when_the_notify_channel_changed(conn, start_server, tmp_path):
    config = tmp_path / "queue.toml"
    config.write_text('notify_channel = "chan_a"\n')
    server = start_server("--workers", "1", "--config", str(config))

    def listening() -> str:
        row = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s",
            (f"qsup-listen-{server.pid}",),
        ).fetchone()
        return row[0] if row else ""

    wait_for(lambda: "chan_a" in listening(), what="LISTEN on chan_a")
    config.write_text('notify_channel = "chan_b"\n')
    server.signal(signal.SIGHUP)
    wait_for(lambda: "chan_b" in listening(), what="LISTEN on chan_b after SIGHUP")
