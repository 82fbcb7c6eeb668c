"""Dead servers rescued in seconds by their liveness lock, and fencing: a server that lost its
lock stops its tasks before another can run them (SPEC §13)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from qsup import repo
from qsup.sql import queries
from tests import edge_tasks, tasks
from tests.conftest import one, task_row, wait_for


def runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.timeout(60)
def test_a_sigkilled_servers_task_runs_again_on_another_within_10_s(
    queue, conn, start_server, tmp_path
):
    first = start_server("--workers", "1")
    ref = queue.add_task(edge_tasks.mark_then_sleep, str(tmp_path), "long", 12, _max_retries=1)
    wait_for(lambda: runs(tmp_path / "long"), what="the task to start on the first server")
    second = start_server("--workers", "1")
    first.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait(10)
    wait_for(lambda: len(runs(tmp_path / "long")) == 2, timeout=15, what="the second run")
    took = time.monotonic() - killed_at
    assert took < 10, f"rescued after {took:.1f} s"
    assert "lost its liveness lock" in second.output()
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "running", what="the row")
    assert task_row(conn, ref.task_id)["attempts"] == 2


@pytest.mark.timeout(60)
def test_a_server_whose_lock_is_taken_stops_its_task_first(queue, conn, start_server, tmp_path):
    server = start_server("--workers", "1")
    ref = queue.add_task(edge_tasks.mark_then_sleep, str(tmp_path), "fenced", 30)
    wait_for(lambda: runs(tmp_path / "fenced"), what="the task to start")
    server_id = one(conn, "SELECT id FROM queued_task_workers WHERE pid = %s", (server.pid,))
    # end the server's session and take its lock before it can: as if it had vanished
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"qsup-supervisor-{server.pid}",),
    )
    wait_for(
        lambda: one(conn, "SELECT pg_try_advisory_lock(%s, %s)", (repo.LIVENESS_CLASS, server_id)),
        what="the server's lock to be free",
    )
    wait_for(
        lambda: "so that no other server runs them twice" in server.output(),
        timeout=10,
        what="the fence",
    )
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "enqueued", what="the task requeued")
    row = task_row(conn, ref.task_id)  # it ran: charged, like a dead server's running task
    assert row["attempts"] == 1
    assert row["error_message"].startswith("ServerFenced: this server lost its liveness lock")
    [log] = [entry for entry in repo.task_logs(conn, ref.task_id) if entry["type"] == "error"]
    assert log["message"].startswith("attempt 1/4 failed, retry in ")
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (repo.LIVENESS_CLASS, server_id))
    wait_for(lambda: len(runs(tmp_path / "fenced")) == 2, what="the run after the lock came back")
    assert "took this server's liveness lock back" in server.output()


@pytest.mark.timeout(60)
def test_a_lost_connection_taken_back_at_once_keeps_the_task_running(
    queue, conn, start_server, tmp_path
):
    server = start_server("--workers", "1")
    ref = queue.add_task(edge_tasks.mark_then_sleep, str(tmp_path), "kept", 4)
    wait_for(lambda: runs(tmp_path / "kept"), what="the task to start")
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"qsup-supervisor-{server.pid}",),
    )
    wait_for(lambda: "took this server's liveness lock back" in server.output(), what="retake")
    assert ref.result(timeout=20) == "kept"
    assert len(runs(tmp_path / "kept")) == 1
    assert "no other server runs them twice" not in server.output()


@pytest.mark.timeout(60)
def test_behind_a_pooler_the_lock_has_a_direct_connection_of_its_own(
    queue, conn, start_server, db_url
):
    server = start_server("--workers", "1", env={"QUEUE_LISTEN_DATABASE_URL": db_url})
    assert queue.add_task(tasks.add, 2, 3).result(timeout=20) == 5
    holder = one(
        conn,
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 AND l.granted"
        " AND a.datname = current_database()",
        (repo.LIVENESS_CLASS,),
    )
    assert holder == f"qsup-liveness-{server.pid}"


@pytest.mark.timeout(30)
def test_the_same_lock_in_another_database_does_not_hide_a_dead_server(conn, server_url):
    """pg_locks lists the locks of every database: server 1 of another database (another
    deployment on the cluster, or another test worker) holding its lock must not make our
    server 1, whose session is gone, look alive to the lock watch or to the heartbeat."""
    dead = repo.register_server(conn, "dead", 1, "host", 1, [], take_lock=False)
    conn.execute(
        "UPDATE queued_task_workers SET liveness_lock = true,"
        " last_heartbeat = now() - interval '1 hour' WHERE id = %s",
        (dead,),
    )
    watcher = repo.register_server(conn, "watcher", 1, "host", 2, [], take_lock=False)
    params = {"lock_class": repo.LIVENESS_CLASS, "server_id": watcher}
    free = queries()["lock_free_servers"]
    with psycopg.connect(conn.info.dsn, autocommit=True) as here:  # held here: alive
        here.execute("SELECT pg_advisory_lock(%s, %s)", (repo.LIVENESS_CLASS, dead))
        assert conn.execute(free, params).fetchone()[0] == []
        beat = repo.heartbeat(conn, watcher, (1, 0, 1), {}, [], 90, may_declare=True)
        assert beat.declared_dead == []  # silent but holding its lock: only slow
    with psycopg.connect(server_url, autocommit=True) as elsewhere:
        assert one(elsewhere, "SELECT current_database()") != one(conn, "SELECT current_database()")
        elsewhere.execute("SELECT pg_advisory_lock(%s, %s)", (repo.LIVENESS_CLASS, dead))
        assert conn.execute(free, params).fetchone()[0] == [dead]
        beat = repo.heartbeat(conn, watcher, (1, 0, 1), {}, [], 90, may_declare=True)
        assert beat.declared_dead == ["dead"]
