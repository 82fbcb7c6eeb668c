"""The supervisor under trouble: dead servers, lost connections, cancellation, leaks, pruning."""

from __future__ import annotations

import signal
import time

import pytest

from qsup import repo
from tests import tasks
from tests.conftest import one, task_row, task_states, wait_for

FAST_HEARTBEAT = {"QUEUE_HEARTBEAT_INTERVAL": "0.2", "QUEUE_SERVER_TIMEOUT": "2"}


def test_tasks_of_a_killed_server_are_rescued_by_another(queue, conn, start_server, tmp_path):
    first = start_server("--workers", "2", env=FAST_HEARTBEAT)
    refs = queue.add_tasks([(tasks.record, (str(tmp_path), f"k{i}", 0.3), {}) for i in range(10)])
    wait_for(lambda: task_states(conn).get("running", 0) >= 1, what="tasks running")
    first.signal(signal.SIGKILL)
    first.wait(10)
    start_server("--workers", "2", env=FAST_HEARTBEAT)
    wait_for(
        lambda: task_states(conn).get("completed", 0) == len(refs),
        timeout=40,
        what="every task to complete on the second server",
    )
    dead = conn.execute(
        "SELECT is_running FROM queued_task_workers WHERE pid = %s", (first.pid,)
    ).fetchone()
    assert dead == (False,)


def test_tasks_held_by_a_deleted_server_row_are_rescued(queue, conn, start_server):
    # an operator cleaned up queued_task_workers while a dead server still held a task
    ref = queue.add_task(tasks.add, 4, 5, _delay=3600)
    conn.execute(
        "UPDATE queued_tasks SET state = 'running', server_id = 424242, attempts = 1,"
        " scheduled_at = now() WHERE id = %s",
        (ref.task_id,),
    )
    start_server("--workers", "1", env=FAST_HEARTBEAT)
    wait_for(
        lambda: task_row(conn, ref.task_id)["state"] == "completed",
        what="the task of the vanished server to be rescued",
    )
    assert task_row(conn, ref.task_id)["attempts"] == 2


def test_connection_kill_is_survived(queue, conn, start_server):
    start_server("--workers", "1")
    assert queue.add_task(tasks.add, 1, 1).result(timeout=20) == 2
    killed = conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name LIKE 'qsup-%%' AND datname = current_database()"
    ).fetchone()[0]
    assert killed == 3  # LISTEN, claiming and writing connections
    refs = [queue.add_task(tasks.add, i, 1) for i in range(5)]
    assert [r.result(timeout=30) for r in refs] == [1, 2, 3, 4, 5]


def test_cancel_request_stops_a_running_task(queue, conn, start_server):
    server = start_server("--workers", "1", env={"QUEUE_HEARTBEAT_INTERVAL": "0.2"})
    ref = queue.add_task(tasks.sleep_then_return, 30)
    after = queue.add_task(tasks.add, 1, 2, _depends_on=[ref])
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "running", what="running")
    conn.execute("UPDATE queued_tasks SET cancel_requested = true WHERE id = %s", (ref.task_id,))
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "cancelled", what="cancelled")
    assert task_row(conn, after.task_id)["state"] == "cancelled"
    server.wait_workers(1)


def test_leaking_worker_is_recycled(queue, conn, start_server):
    server = start_server("--workers", "1", env={"QUEUE_MAX_WORKER_MEMORY_MB": "60"})
    (first,) = server.wait_workers(1)
    results = [queue.add_task(tasks.leak, 30).result(timeout=20) for _ in range(3)]
    assert results[-1] < 3  # the leak was reset by a fresh worker
    wait_for(lambda: "recycling worker" in server.output(), what="a recycle log line")
    assert first.pid not in {w.pid for w in server.workers()}


def test_finished_tasks_are_pruned_after_the_ttl(queue, conn, start_server):
    old = queue.add_task(tasks.add, 1, 1)
    fresh = queue.add_task(tasks.add, 2, 2)
    conn.execute(
        "UPDATE queued_tasks SET state = 'completed', date_done = now() - interval '2 hours'"
        " WHERE id = %s",
        (old.task_id,),
    )
    conn.execute(
        "INSERT INTO queued_task_logs (queued_task_id, message) VALUES (%s, 'x')", (old.task_id,)
    )
    start_server("--workers", "1", env={"QUEUE_RESULT_TTL": "3600"})
    wait_for(lambda: repo.get_task(conn, old.task_id) is None, what="the old task to be pruned")
    assert repo.task_logs(conn, old.task_id) == []
    assert fresh.result(timeout=20) == 4


@pytest.mark.timeout(120)
def test_a_short_ttl_keeps_the_table_bounded_while_tasks_run(queue, conn, start_server):
    """The pruner works on its own connection, while the server goes on claiming: bursts of
    tasks run until it has pruned twice more, and the table never held all they added."""
    server = start_server("--workers", "2", env={"QUEUE_RESULT_TTL": "1"})
    pruner = f"qsup-pruner-{server.pid}"
    unfinished = "SELECT count(*) FROM queued_tasks WHERE date_done IS NULL"

    def burst() -> int:
        queue.add_tasks([(tasks.add, (i, 1), {}) for i in range(1000)])
        wait_for(lambda: one(conn, unfinished) == 0, timeout=30, what="the burst to run")
        return int(one(conn, "SELECT count(*) FROM queued_tasks"))

    burst()  # the first round comes 3 s after start, and prunes this burst once 1 s old
    wait_for(lambda: "pruned " in server.output(), timeout=30, what="the first prune")
    rounds, added, peak = server.output().count("pruned "), 0, 0
    while server.output().count("pruned ") < rounds + 2:  # a fast machine runs bursts faster
        assert added < 100_000, "the pruner did not prune again while tasks ran"
        peak = max(peak, burst())
        added += 1000
    assert peak < added  # pruned meanwhile: the table never held every task the bursts added
    own_session = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND query LIKE '%%queued_task%%'"
    )
    wait_for(lambda: one(conn, own_session, (pruner,)) == 1, what="the pruner's own session")
    wait_for(
        lambda: one(conn, "SELECT count(*) FROM queued_tasks") == 0,
        timeout=30,
        what="every finished task to be pruned",
    )


def test_delayed_task_waits_and_survives_a_restart(queue, conn, start_server):
    server = start_server("--workers", "1")
    ref = queue.add_task(tasks.add, 1, 2, _delay=1.5)
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0
    assert task_row(conn, ref.task_id)["state"] == "enqueued"
    start_server("--workers", "1")
    assert ref.result(timeout=20) == 3
    row = task_row(conn, ref.task_id)
    assert (row["date_started"] - row["date_enqueued"]).total_seconds() >= 1.5


def test_priorities_and_queue_filters(queue, conn, start_server, tmp_path):
    low = queue.add_task(tasks.record, str(tmp_path), "low", _priority=0)
    high = queue.add_task(tasks.record, str(tmp_path), "high", _priority=10)
    other = queue.add_task(tasks.add, 1, 1, _queue="other")
    start_server("--workers", "1", "--queues", "default")
    wait_for(lambda: task_states(conn).get("completed", 0) == 2, what="default-queue tasks")
    rows = {
        r[0]: r[1]
        for r in conn.execute("SELECT id, date_started FROM queued_tasks WHERE state = 'completed'")
    }
    assert rows[high.task_id] <= rows[low.task_id]
    assert task_row(conn, other.task_id)["state"] == "enqueued"


def test_dependents_of_a_task_failed_by_rescue_are_cancelled(queue, conn, start_server, tmp_path):
    first = start_server("--workers", "1", env=FAST_HEARTBEAT)
    doomed = queue.add_task(tasks.sleep_then_return, 30, _max_retries=0)
    after = queue.add_task(tasks.add, 1, 1, _depends_on=[doomed])
    wait_for(lambda: task_row(conn, doomed.task_id)["state"] == "running", what="running")
    first.signal(signal.SIGKILL)
    first.wait(10)
    start_server("--workers", "1", env=FAST_HEARTBEAT)
    wait_for(lambda: task_row(conn, doomed.task_id)["state"] == "failed", what="rescue")
    wait_for(
        lambda: task_row(conn, after.task_id)["state"] == "cancelled",
        what="the dependent to be cancelled",
    )


def test_cancel_reaches_the_holding_server_by_notify(queue, conn, start_server):
    from qsup import admin

    start_server("--workers", "1")  # default heartbeat (30 s): only NOTIFY can be this fast
    ref = queue.add_task(tasks.sleep_then_return, 30)
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "running", what="running")
    assert admin.cancel_task(conn, ref.task_id, queue.config.notify_channel) == "cancelling"
    wait_for(
        lambda: task_row(conn, ref.task_id)["state"] == "cancelled",
        timeout=5,
        what="the running task to be cancelled",
    )


def test_cancel_of_a_task_queued_in_a_worker_stops_it_from_running(
    queue, conn, start_server, tmp_path
):
    from qsup import admin

    start_server("--workers", "1", env={"QUEUE_RETRY_BACKOFF_BASE": "0.05"})
    # Short tasks make the supervisor queue the next job in the worker behind the running one.
    assert queue.add_task(tasks.sleep_then_return, 0.02).result(timeout=20) is None
    first = queue.add_task(tasks.record, str(tmp_path), "first", 1.0)
    second = queue.add_task(tasks.record, str(tmp_path), "second", 0.0)
    wait_for(lambda: task_row(conn, first.task_id)["state"] == "running", what="running")
    wait_for(lambda: task_row(conn, second.task_id)["state"] == "picked_up", what="queued")
    assert admin.cancel_task(conn, second.task_id, queue.config.notify_channel) == "cancelling"
    wait_for(lambda: task_row(conn, second.task_id)["state"] == "cancelled", what="cancel")
    assert first.result(timeout=20) == "first"
    assert not (tmp_path / "second").exists()


def test_random_worker_kills_during_2000_tasks_lose_nothing(queue, conn, start_server, tmp_path):
    import random

    server = start_server(
        "--workers", "2", "--min-workers", "2", env={"QUEUE_RETRY_BACKOFF_BASE": "0.01"}
    )
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    refs = queue.add_tasks(
        [(tasks.record, (str(runs_dir), f"t{i}", 0.002), {}) for i in range(2000)]
    )
    kills = 0
    rng = random.Random(7)
    while task_states(conn).get("completed", 0) < 1500 and kills < 5:
        workers = server.workers()
        if workers:
            rng.choice(workers).kill()
            kills += 1
        time.sleep(0.3)
    wait_for(
        lambda: task_states(conn).get("completed", 0) == len(refs),
        timeout=60,
        what="every task to complete",
    )
    runs = {p.name: p.read_text().count("\n") for p in runs_dir.iterdir()}
    assert len(runs) == len(refs)  # every task ran to completion at least once
    reruns = sum(n - 1 for n in runs.values())
    assert kills >= 3 and reruns <= kills * 20, (kills, reruns)  # only what a kill interrupted
