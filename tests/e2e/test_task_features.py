"""Task features through the public API against a real server."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest

from qsup import TaskFailed, repo
from tests import tasks
from tests.conftest import task_row, task_states, wait_for
from tests.servers import ROOT


def test_fan_out_then_fan_in_runs_the_final_task_once_after_all_children(
    queue, conn, start_server, tmp_path
):
    start_server("--workers", "2")
    assert queue.add_task(tasks.fan_out, str(tmp_path), 4).result(timeout=20) == 4
    wait_for(lambda: (tmp_path / "final").exists(), what="the final task")
    final = (tmp_path / "final").stat().st_mtime
    assert all((tmp_path / f"child{i}").stat().st_mtime <= final for i in range(4))
    wait_for(lambda: task_states(conn) == {"completed": 6}, what="six completed tasks")
    assert (tmp_path / "final").read_text().count("\n") == 1


def test_a_failed_link_cancels_the_rest_of_the_chain_with_a_reason(queue, conn, start_server):
    a = queue.add_task(tasks.add, 1, 1)
    b = queue.add_task(tasks.always_fail, _parent=a, _max_retries=0)
    c = queue.add_task(tasks.add, 2, 2, _parent=b)
    start_server("--workers", "1")
    wait_for(lambda: task_row(conn, c.task_id)["state"] == "cancelled", what="C cancelled")
    assert task_row(conn, a.task_id)["state"] == "completed"
    assert task_row(conn, b.task_id)["state"] == "failed"
    logs = repo.task_logs(conn, c.task_id)
    assert logs and str(b.task_id) in logs[-1]["message"]
    with pytest.raises(TaskFailed, match="cancelled"):
        c.result(timeout=5)


def test_wait_result_returns_and_raises(queue, start_server):
    start_server("--workers", "1")

    async def scenario() -> None:
        ok = await queue.add_task_async(tasks.async_add, 20, 22)
        assert await ok.wait_result(timeout=20) == 42
        bad = await queue.add_task_async(tasks.always_fail, _max_retries=0)
        with pytest.raises(TaskFailed, match="always fails"):
            await bad.wait_result(timeout=20)
        await queue.aclose()

    asyncio.run(scenario())


def test_workers_are_recycled_after_max_tasks(queue, conn, start_server):
    server = start_server("--workers", "1", env={"QUEUE_MAX_TASKS_PER_WORKER": "3"})
    assert [queue.add_task(tasks.add, i, 0).result(timeout=20) for i in range(9)] == list(range(9))
    used = [
        row[0] for row in conn.execute("SELECT worker_pid FROM queued_tasks ORDER BY date_started")
    ]
    assert len(set(used)) == 3 and all(used.count(pid) == 3 for pid in set(used)), used
    wait_for(lambda: "ran 3 tasks (max_tasks_per_worker=3)" in server.output(), what="recycle log")


def test_second_sigint_stops_at_once_and_requeues(queue, conn, start_server, tmp_path):
    server = start_server("--workers", "1")
    ref = queue.add_task(tasks.sleep_then_return, 60)
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "running", what="running")
    server.signal(signal.SIGINT)
    wait_for(lambda: "draining" in server.output(), what="the drain")
    server.signal(signal.SIGINT)
    assert server.wait(15) == 0
    row = task_row(conn, ref.task_id)
    assert row["state"] == "enqueued" and row["attempts"] == 0  # no attempt used


def test_json_logs_carry_task_id_and_pid(queue, start_server):
    server = start_server(
        "--workers", "1", env={"QSUP_LOG_FORMAT": "json", "QUEUE_RETRY_BACKOFF_BASE": "10"}
    )
    ref = queue.add_task(tasks.always_fail, _max_retries=1)
    wait_for(lambda: "retry in" in server.output(), what="a retry log line")
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    about = [r for r in lines if r["record"]["extra"].get("task_id") == str(ref.task_id)]
    # the supervisor writes them, but the "started" event (DEBUG), which the worker writes
    workers = {w.pid for w in server.workers()}
    started = [r["record"]["extra"].get("event") == "started" for r in about]
    pids = [r["record"]["process"]["id"] for r in about]
    assert any(started) and {p for p, s in zip(pids, started, strict=True) if s} <= workers
    assert {p for p, s in zip(pids, started, strict=True) if not s} == {server.pid}


def test_enqueue_cli_then_task_show(db_url, start_server):
    start_server("--workers", "1")
    env = {"QUEUE_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "qsup", "enqueue", "tests.tasks:add", "2", "40"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    task_id = out.stdout.strip()

    def shown() -> dict | None:
        show = subprocess.run(
            [sys.executable, "-m", "qsup", "task", "show", task_id[:8], "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        data = json.loads(show.stdout)
        return data if data["state"] == "completed" else None

    assert wait_for(shown, what="the task to show completed")["result"] == 42
