"""Inside a running task (SPEC §18), through a real ``qsup serve``: the live stack, progress,
and what it costs so far."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from qsup import group, probes, step
from tests import tasks
from tests.conftest import task_row, wait_for
from tests.servers import ROOT

pytestmark = pytest.mark.timeout(90)
TOKEN = "inside-token"


def qsup(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUEUE_DATABASE_URL": db_url, **env}  # PYTHONPATH: this checkout's
    return subprocess.run(
        [sys.executable, "-m", "qsup", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def shown(db_url: str, task_id: Any) -> dict[str, Any]:
    out = qsup(db_url, "task", "show", str(task_id), "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def signs(tmp_path: Path) -> tuple[str, str]:
    """The files a test task touches once it runs, and waits for before it ends."""
    return str(tmp_path / "running"), str(tmp_path / "release")


def answered_within(conn: Any, task_id: Any) -> float:
    """Seconds between the last probe's request and its answer, as the database saw them."""
    row = conn.execute(
        "SELECT extract(epoch FROM answered_at - requested_at) FROM queued_task_probes"
        " WHERE task_id = %s",
        (task_id,),
    ).fetchone()
    return float(row[0])


def test_the_stack_of_a_task_sleeping_in_a_c_call_shows_its_function_while_it_runs_on(
    queue, conn, db_url, start_server, tmp_path
):
    start_server("--workers", "1")
    sign, release = signs(tmp_path)
    ref = queue.add_task(tasks.wait_deeply, sign, release)
    wait_for(Path(sign).exists, what="the task to run")
    out = qsup(db_url, "task", "stack", str(ref.task_id)[-12:])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "in wait_deeply" in out.stdout and lines[-2].endswith("in deep_wait"), out.stdout
    assert lines[-1].strip().startswith("time.sleep(0.05)")  # the source line, innermost last
    assert "qsup/worker" not in out.stdout  # the runner's frames are left out
    assert answered_within(conn, ref.task_id) < 1.0
    assert task_row(conn, ref.task_id)["state"] == "running"  # the dump did not stop it
    Path(release).touch()
    assert ref.result(timeout=20) == "woke"


def test_the_stack_of_an_async_task_is_its_coroutine_chain(
    queue, conn, db_url, start_server, tmp_path
):
    start_server("--workers", "1")
    sign, release = signs(tmp_path)
    ref = queue.add_task(tasks.async_waits_deeply, sign, release)
    wait_for(Path(sign).exists, what="the task to run")
    out = qsup(db_url, "task", "stack", str(ref.task_id), "--json")
    assert out.returncode == 0, out.stderr
    stack = json.loads(out.stdout)["stack"]
    assert "in async_waits_deeply" in stack and "in async_deep_wait" in stack, stack
    assert "await asyncio.sleep(0.05)" in stack
    assert "selectors.py" not in stack  # not the idle event loop's frames
    Path(release).touch()
    assert ref.result(timeout=20) == "woke"


def test_a_task_that_is_not_running_has_no_stack(queue, db_url, start_server):
    start_server("--workers", "1")
    ref = queue.add_task(tasks.add, 1, 2)
    assert ref.result(timeout=20) == 3
    out = qsup(db_url, "task", "stack", str(ref.task_id))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "is not running (it is completed)" in out.stderr


def test_progress_shows_while_running_and_stays_after_the_end(
    queue, db_url, start_server, tmp_path
):
    start_server("--workers", "1")
    sign, release = signs(tmp_path)
    ref = queue.add_task(tasks.report_progress, sign, release)
    wait_for(Path(sign).exists, what="the task to run")

    def half_way() -> dict[str, Any] | None:
        data = shown(db_url, ref.task_id)
        progress = data["progress"] or {}
        return data if progress.get("fraction") == 0.5 else None

    data = wait_for(half_way, timeout=10, what="progress 0.5")  # held back 1 s by the throttle
    assert data["state"] == "running"
    assert data["progress"]["message"] == "half way" and data["progress"]["data"] == {"rows": 500}
    Path(release).touch()
    assert ref.result(timeout=20) == "woke"
    assert shown(db_url, ref.task_id)["progress"]["fraction"] == 0.5


def test_a_running_task_shows_the_memory_it_holds_and_its_cpu(
    queue, db_url, start_server, tmp_path
):
    start_server("--workers", "1")
    sign, release = signs(tmp_path)
    ref = queue.add_task(tasks.hold_memory, sign, release, 120)
    wait_for(Path(sign).exists, what="the task to allocate")
    now = shown(db_url, ref.task_id)["running_now"]
    assert now["rss_bytes"] > 120 * 1024 * 1024, now
    assert now["cpu_seconds"] > 0 and 0 < now["running_seconds"] < 30
    out = qsup(db_url, "task", "show", str(ref.task_id))
    assert "running_now: cpu_seconds" in out.stdout and "rss_bytes 1" in out.stdout, out.stdout
    Path(release).touch()
    ref.result(timeout=20)
    assert "running_now" not in shown(db_url, ref.task_id)  # ended: only the attempt's figures


def get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_http_api_shows_the_stack_with_the_admin_token_and_progress_to_readers(
    queue, start_server, tmp_path
):
    server = start_server("--workers", "1", env={"QSUP_ADMIN_TOKEN": TOKEN}, http=True)
    sign, release = signs(tmp_path)
    ref = queue.add_task(tasks.report_progress, sign, release)
    wait_for(Path(sign).exists, what="the task to run")
    path = f"/api/tasks/{ref.task_id}"
    assert get(server.url(f"{path}/stack"))[0] == 401
    status, body = get(server.url(f"{path}/stack"), TOKEN)
    assert status == 200 and "in report_progress" in body["stack"], body
    assert body["rss_bytes"] > 0 and body["running_seconds"] > 0

    def detail() -> dict[str, Any] | None:
        task = get(server.url(path))[1]
        done = task["progress"] and task["progress"]["fraction"] == 0.5 and task["running_now"]
        return task if done else None

    task = wait_for(detail, timeout=10, what="progress and figures in the API")
    assert task["progress"]["message"] == "half way"
    listed = get(server.url("/api/tasks"))[1]["tasks"]
    assert [t["progress"]["fraction"] for t in listed if t["id"] == str(ref.task_id)] == [0.5]
    Path(release).touch()
    ref.result(timeout=20)
    status, body = get(server.url(f"{path}/stack"), TOKEN)
    assert status == 409 and "not running" in body["error"]


def test_a_probe_of_a_task_not_started_says_so(queue, conn):
    """No server runs: the task is enqueued, and a probe refuses at once."""
    ref = queue.add_task(tasks.add, 1, 2)
    with pytest.raises(probes.TaskNotRunning, match="it is enqueued"):
        probes.request(conn, ref.task_id, None)


# --- stranded and stalled work ---------------------------------------------------------------


def test_tasks_in_a_queue_no_server_serves_make_health_degraded_naming_the_queue(
    queue, db_url, start_server
):
    env = {"QUEUE_STRANDED_AFTER": "1"}
    server = start_server("--workers", "1", "--queues", "default", env=env, http=True)
    for _ in range(3):
        queue.add_task(tasks.add, 1, 2, _queue="nowhere")
    queue.add_task(tasks.add, 1, 2).result(timeout=20)  # the server runs its own queue

    def degraded() -> dict[str, Any] | None:
        body = get(server.url("/health/queue"))[1]
        return body if body.get("stranded") == [{"queue": "nowhere", "tasks": 3}] else None

    body = wait_for(degraded, timeout=15, what="/health/queue degraded by all three")
    assert body["status"] == "degraded" and body["reason"] == "stranded_work"
    assert body["stalled"] == []
    logged = "task(s) of queue nowhere have been due for more than 1 s and no live server"
    wait_for(lambda: logged in server.output(), what="the WARNING naming the queue")
    status = qsup(db_url, "queue", "status", **env)
    assert "STRANDED: queue nowhere: 3 task(s) due for more than 1 s" in status.stdout
    report = json.loads(qsup(db_url, "queue", "status", "--json", **env).stdout)
    assert report["stranded"] == [{"queue": "nowhere", "tasks": 3}]
    assert "STRANDED" not in qsup(db_url, "queue", "status").stdout  # 60 s by default
    metrics = urllib.request.urlopen(server.url("/metrics"), timeout=10).read().decode()
    assert 'qsup_queue_stranded_tasks{queue="nowhere"} 3.0' in metrics


def test_a_live_server_with_idle_workers_that_leaves_due_work_waiting_is_named(
    queue, conn, start_server
):
    server = start_server("--workers", "1", "--queues", "default", http=True,
                          env={"QUEUE_STRANDED_AFTER": "1"})  # fmt: skip
    conn.execute(  # a server of another version, alive, idle, that claims nothing
        "INSERT INTO queued_task_workers (server_name, hostname, pid, max_workers,"
        " idle_workers, queues, is_running) VALUES ('ghost', 'elsewhere', 1, 2, 2, '{mail}', true)"
    )
    queue.add_task(tasks.add, 1, 2, _queue="mail")

    def degraded() -> dict[str, Any] | None:
        body = get(server.url("/health/queue"))[1]
        return body if body["status"] == "degraded" else None

    body = wait_for(degraded, timeout=15, what="/health/queue degraded")
    assert body["stalled"] == [{"server": "ghost"}] and body["stranded"] == []
    wait_for(lambda: "server ghost has idle workers" in server.output(), what="the WARNING")
    conn.execute("INSERT INTO queued_task_queues (queue, paused) VALUES ('mail', true)")
    wait_for(lambda: get(server.url("/health/queue"))[1]["status"] == "healthy",
             what="healthy: a paused queue is no stall")  # fmt: skip


def test_a_server_whose_loop_is_stuck_on_its_connection_notices_and_reconnects(
    queue, conn, start_server
):
    server = start_server("--workers", "1", env={"QUEUE_STRANDED_AFTER": "1"})
    server_id = conn.execute("SELECT max(id) FROM queued_task_workers").fetchone()[0]
    with conn.transaction():  # its heartbeat waits on its own row: its loop is stuck
        conn.execute("SELECT 1 FROM queued_task_workers WHERE id = %s FOR UPDATE", (server_id,))
        conn.execute("SELECT pg_notify('qsup', 'qsup:cancel')")  # beat now
        wait_for(lambda: "loop was stuck for" in server.output(), timeout=15,
                 what="the claim_stalled WARNING")  # fmt: skip
    assert queue.add_task(tasks.add, 2, 3).result(timeout=20) == 5  # it claims again


def test_each_step_of_a_workflow_shows_its_own_progress(queue, db_url, start_server, tmp_path):
    start_server("--workers", "2")
    release = tmp_path / "release"
    release.touch()  # the steps end at once
    wf = queue.add_workflow(
        group(
            step(tasks.report_progress, str(tmp_path / "first"), str(release)),
            step(tasks.hold_memory, str(tmp_path / "second"), str(release), 1),
        )
    )
    wf.result(timeout=30)
    out = qsup(db_url, "workflow", "show", str(wf.workflow_id))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("report_progress" in line and '50% half way {"rows":500}' in line for line in lines)
    assert not any("hold_memory" in line and "%" in line for line in lines)  # it reported none
    shown = json.loads(qsup(db_url, "workflow", "show", str(wf.workflow_id), "--json").stdout)
    assert [s["progress"] and s["progress"]["fraction"] for s in shown["steps"]] == [0.5, None]
