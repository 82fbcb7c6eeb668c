"""A dead server's tasks are charged an attempt only if they started (SPEC §14): those it held
unstarted go back with their attempt and last error; a running one is charged, with a log row
naming the server that died."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from qsup import repo
from tests import edge_tasks, tasks
from tests.conftest import one, task_row, wait_for

HELD = 60  # never-started _max_retries=0 tasks enqueued for the server to hold
AT_LEAST = 24  # held when it is killed (all, unless the machine is slow: see the claim size)
EARLIER_ERROR = "ValueError: an earlier attempt failed"


def held_unstarted(conn, server_id: int) -> int:
    return one(
        conn,
        "SELECT count(*) FROM queued_tasks WHERE server_id = %s AND state = 'picked_up'"
        " AND error_message = %s",
        (server_id, EARLIER_ERROR),
    )


@pytest.mark.timeout(90)
def test_a_sigkilled_servers_unstarted_tasks_keep_their_attempt_and_error(
    queue, conn, start_server, tmp_path
):
    first = start_server("--workers", "1")
    # short tasks first: the server then claims ahead and queues jobs behind a running one
    warm = queue.add_tasks([(tasks.add, (i, 1), {}) for i in range(40)])
    for ref in warm:
        ref.result(timeout=20)
    long = queue.add_task(
        edge_tasks.mark_then_sleep, str(tmp_path), "long", 60, _max_retries=0, _queue="slow"
    )
    wait_for(lambda: (tmp_path / "long").exists(), what="the long task to start")
    wait_for(lambda: task_row(conn, long.task_id)["state"] == "running", what="its start row")
    server_id = task_row(conn, long.task_id)["server_id"]
    # tasks that failed an attempt before (the error must survive), none retry left to spend
    conn.execute(
        "WITH ins AS (INSERT INTO queued_tasks (id, name, args, kwargs, max_retries,"
        " error_message) SELECT gen_random_uuid(), 'tests.tasks:add', jsonb_build_array(i, 1),"
        " '{}', 0, %s FROM generate_series(1, %s) AS i RETURNING queue)"
        " SELECT pg_notify(%s, 'default')",
        (EARLIER_ERROR, HELD, queue.config.wake_channel),
    )
    # it claims about 0.2 s of work per worker ahead (policy.handoff): all 60 at 3 ms a task
    wait_for(
        lambda: held_unstarted(conn, server_id) >= AT_LEAST,
        what="the server to hold dozens of tasks, none started (one worker, busy)",
    )
    workers = first.workers()
    first.signal(signal.SIGKILL)
    first.wait(10)
    for worker in workers:
        try:
            worker.kill()
        except psutil.NoSuchProcess:
            pass
    held = held_unstarted(conn, server_id)  # what it held when it died

    # a server of another queue only rescues them: the rows can be read before they run again
    rescuer = start_server("--workers", "1", "--queues", "elsewhere")
    wait_for(
        lambda: one(conn, "SELECT count(*) FROM queued_tasks WHERE server_id IS NULL") == HELD + 1,
        timeout=30,
        what="the rescue",
    )
    rows = conn.execute(
        "SELECT state, attempts, error_message, date_started, flow_slot FROM queued_tasks"
        " WHERE name = 'tests.tasks:add' AND error_message IS NOT NULL"
    ).fetchall()
    assert rows == [("enqueued", 0, EARLIER_ERROR, None, None)] * HELD
    rescued_logs = conn.execute(
        "SELECT l.message FROM queued_task_logs l JOIN queued_tasks t ON t.id = l.queued_task_id"
        " WHERE t.name = 'tests.tasks:add' AND l.type = 'rescued'"
    ).fetchall()
    assert len(rescued_logs) == held
    assert f"server {server_id} (" in rescued_logs[0][0]
    assert "died before the task started (declared dead at " in rescued_logs[0][0]
    assert rescued_logs[0][0].endswith(": requeued without using an attempt")

    dead = task_row(conn, long.task_id)  # it ran: charged, and it had no retry left
    assert (dead["state"], dead["attempts"]) == ("failed", 1)
    assert dead["error_message"].startswith(f"ServerDied: server {server_id} (")
    assert "died while the task ran (declared dead at " in dead["error_message"]
    assert dead["date_started"] is not None
    logs = [log["message"] for log in repo.task_logs(conn, long.task_id) if log["type"] == "error"]
    assert len(logs) == 1 and logs[0].startswith("attempt 1/1 failed, no retry left: ServerDied")
    assert f"rescued {held + 1} task(s) from dead servers: {held} never started" in rescuer.output()

    start_server("--workers", "2")
    wait_for(
        lambda: (
            one(conn, "SELECT count(*) FROM queued_tasks WHERE state = 'completed'")
            == len(warm) + HELD
        ),
        timeout=30,
        what="every never-started task to complete",
    )
    attempts = conn.execute(
        "SELECT DISTINCT attempts FROM queued_tasks WHERE name = 'tests.tasks:add'"
    ).fetchall()
    assert attempts == [(1,)]
    assert Path(tmp_path / "long").read_text().count("\n") == 1  # never run again


@pytest.mark.timeout(120)
def test_a_task_that_kills_its_server_before_its_start_is_written_is_quarantined(
    queue, conn, start_server, tmp_path
):
    """Such a task looks never started to the rescue: given back for free, it would take
    down every server that claims it, for ever. The third server it kills (QUEUE_MAX_CRASHES
    = 2) is the last."""
    ref = queue.add_task(edge_tasks.kill_own_supervisor, str(tmp_path), "pill", _max_retries=9)
    for death in (1, 2, 3):
        server = start_server("--workers", "1")
        assert server.wait(30) == -signal.SIGKILL
        assert (tmp_path / "pill").read_text().count("\n") == death
    start_server("--workers", "1")
    wait_for(
        lambda: task_row(conn, ref.task_id)["state"] == "failed", timeout=30, what="quarantine"
    )
    row = task_row(conn, ref.task_id)
    assert row["error_message"].startswith(
        "quarantined: 3 servers died holding it before its start was written; the last: server"
    )
    assert row["attempts"] == 1
    assert (tmp_path / "pill").read_text().count("\n") == 3


@pytest.mark.timeout(60)
def test_a_server_declared_dead_under_a_running_task_leaves_the_rescue_alone(
    queue, conn, start_server, tmp_path
):
    """It was only slow: another server declared it dead and charged the running task. The
    server then stops that task (fence) but writes nothing over the rescue, and runs the
    task again as its next attempt."""
    server = start_server("--workers", "1", env={"QUEUE_HEARTBEAT_INTERVAL": "0.2"})
    ref = queue.add_task(edge_tasks.mark_then_sleep, str(tmp_path), "cut", 2, _max_retries=1)
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "running", what="its start row")
    server_id = task_row(conn, ref.task_id)["server_id"]
    with conn.transaction():  # what the other server does, before our heartbeat revives us
        conn.execute(
            "UPDATE queued_task_workers SET is_running = false, date_stopped = now() WHERE id = %s",
            (server_id,),
        )
        [rescued] = repo.rescue_orphans(conn, 2)
    assert (rescued.state, rescued.verdict) == ("enqueued", "retry")
    assert ref.result(timeout=30) == "cut"
    row = task_row(conn, ref.task_id)
    assert (row["state"], row["attempts"], row["server_id"]) == ("completed", 2, server_id)
    assert (tmp_path / "cut").read_text().count("\n") == 2
    logs = [log["message"] for log in repo.task_logs(conn, ref.task_id)]
    assert len(logs) == 1, logs
    assert logs[0].startswith(f"attempt 1/2 failed, retry now: ServerDied: server {server_id} (")
    assert "this server had been declared dead by another" in server.output()
