"""Middleware hooks around real tasks in a real server: what ran, in which process, in which
order, for completed, retried, failed, timed-out and killed tasks (SPEC §12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qsup import Queue, TaskDefinitionError
from tests import hooks_support, tasks
from tests.conftest import one, task_row, wait_for
from tests.servers import ROOT

RECORDING = "tests.hooks_support:Outer,tests.hooks_support:Inner"
pytestmark = pytest.mark.timeout(90)


def calls(path: Path, task_id: Any = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [c for c in lines if task_id is None or c["task"] == str(task_id)]


def trail(path: Path, task_id: Any) -> list[str]:
    return [f"{c['hook']}:{c['mw']}" for c in calls(path, task_id)]


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("QSUP_TEST_HOOKS", str(path))
    return path


@pytest.fixture
def mw_queue(queue: Queue) -> Queue:
    """A queue whose configuration names the recording middleware (enqueue side)."""
    return Queue(config=queue.config.replace(middleware=RECORDING.split(",")))


AROUND = ["around_enter:outer", "around_enter:inner", "around_exit:inner", "around_exit:outer"]
BEFORE = ["before_task:outer", "before_task:inner"]


def test_hooks_run_in_order_in_the_right_processes(mw_queue, conn, start_server, recorded):
    server = start_server(
        "--workers", "1", "--import", "tests.hooks_support", env={"QUEUE_MIDDLEWARE": RECORDING}
    )
    ok = mw_queue.add_task(tasks.add, 2, 3, _headers={"request_id": "r-1"})
    assert ok.result(timeout=20) == 5
    wait_for(lambda: len(calls(recorded, ok.task_id)) == 10, what="the hooks of a completed task")
    assert trail(recorded, ok.task_id) == [
        "on_enqueue:outer",
        "on_enqueue:inner",
        *BEFORE,
        *AROUND,
        "after_task:inner",
        "after_task:outer",
    ]
    by_hook = {f"{c['hook']}:{c['mw']}": c for c in calls(recorded, ok.task_id)}
    assert by_hook["on_enqueue:outer"]["pid"] == os.getpid()
    assert by_hook["on_enqueue:outer"]["args"] == [2, 3]
    assert by_hook["on_enqueue:outer"]["attempt"] == 0
    worker_pid = task_row(conn, ok.task_id)["worker_pid"]
    worker_calls = calls(recorded, ok.task_id)[2:]
    assert {c["pid"] for c in worker_calls} == {worker_pid} and worker_pid != server.pid
    assert by_hook["before_task:inner"]["headers"] == {
        "request_id": "r-1",
        "outer": "yes",
        "inner": "yes",
    }
    assert by_hook["after_task:outer"]["result"] == 5
    assert all(c["attempt"] == 1 and c["queue"] == "default" for c in worker_calls)

    # an async task: the async around variants, an async before_task
    done = mw_queue.add_task(tasks.async_add, 1, 1)
    assert done.result(timeout=20) == 2
    wait_for(lambda: len(calls(recorded, done.task_id)) == 10, what="the async task's hooks")
    assert trail(recorded, done.task_id)[2:8] == [*BEFORE, *AROUND]
    assert all(c.get("is_async") for c in calls(recorded, done.task_id) if "around" in c["hook"])

    # a retry, then the last attempt fails: on_retry with the delay, then on_failure
    bad = mw_queue.add_task(tasks.always_fail, _max_retries=1)
    wait_for(lambda: task_row(conn, bad.task_id)["state"] == "failed", what="the failure")
    wait_for(lambda: len(calls(recorded, bad.task_id)) == 18, what="two attempts' hooks")
    retry, failure = calls(recorded, bad.task_id)[8:10], calls(recorded, bad.task_id)[16:]
    assert [(c["hook"], c["mw"], c["attempt"], c["exc"]) for c in retry] == [
        ("on_retry", "inner", 1, "ValueError"),
        ("on_retry", "outer", 1, "ValueError"),
    ]
    assert 0 < retry[0]["delay"] < 5  # the supervisor's backoff, decided in the worker
    assert [(c["hook"], c["mw"], c["attempt"]) for c in failure] == [
        ("on_failure", "inner", 2),
        ("on_failure", "outer", 2),
    ]


def test_timeouts_and_dead_workers_reach_the_hooks(mw_queue, conn, start_server, recorded):
    server = start_server(
        "--workers",
        "1",
        "--import",
        "tests.hooks_support",
        env={"QUEUE_MIDDLEWARE": RECORDING, "QUEUE_TIMEOUT_GRACE": "0.5"},
    )
    # the worker's own timeout: on_failure with TaskTimeout
    slow = mw_queue.add_task(hooks_support.sleep, 30, _timeout=0.3, _max_retries=0)
    wait_for(lambda: len(calls(recorded, slow.task_id)) == 10, what="the timed-out task's hooks")
    assert trail(recorded, slow.task_id)[-2:] == ["on_failure:inner", "on_failure:outer"]
    assert calls(recorded, slow.task_id)[-1]["exc"] == "TaskTimeout"

    # deaf to the alarm: the supervisor kills the worker and tells on_worker_died
    deaf = mw_queue.add_task(tasks.deaf_to_timeouts, 30, _timeout=0.3, _max_retries=0)
    wait_for(lambda: task_row(conn, deaf.task_id)["state"] == "failed", what="the kill")
    died = [c for c in calls(recorded, deaf.task_id) if c["hook"] == "on_worker_died"]
    assert [(c["mw"], c["cause"], c["pid"]) for c in died] == [
        ("inner", "timeout", server.pid),
        ("outer", "timeout", server.pid),
    ]

    # killed from outside: a crash
    crash = mw_queue.add_task(hooks_support.sleep, 30, _max_retries=0)
    wait_for(lambda: task_row(conn, crash.task_id)["state"] == "running", what="running")
    os.kill(task_row(conn, crash.task_id)["worker_pid"], signal.SIGKILL)
    wait_for(lambda: task_row(conn, crash.task_id)["state"] == "failed", what="the crash")
    died = [c for c in calls(recorded, crash.task_id) if c["hook"] == "on_worker_died"]
    assert [(c["mw"], c["cause"], c["attempt"]) for c in died] == [
        ("inner", "crash", 1),
        ("outer", "crash", 1),
    ]


def test_raising_hooks_lose_and_fail_nothing(queue, conn, start_server):
    broken = Queue(config=queue.config.replace(middleware=["tests.hooks_support:Raising"]))
    server = start_server(
        "--workers",
        "1",
        "--import",
        "tests.hooks_support",
        env={"QUEUE_MIDDLEWARE": "tests.hooks_support:Raising"},
    )
    refs = [broken.add_task(tasks.add, i, i) for i in range(5)]
    assert [ref.result(timeout=20) for ref in refs] == [0, 2, 4, 6, 8]
    bad = broken.add_task(tasks.fail_until, 2, _max_retries=1, _headers={"k": "v"})
    assert bad.result(timeout=20) == 2  # retried once (on_retry raised), then completed
    failed = broken.add_task(tasks.always_fail, _max_retries=0)
    wait_for(lambda: task_row(conn, failed.task_id)["state"] == "failed", what="the failure")
    assert task_row(conn, failed.task_id)["attempts"] == 1
    name = "tests.hooks_support:Raising.before_task"
    wait_for(lambda: f"middleware hook {name} raised; ignored" in server.output(), what="the log")
    assert "tests.hooks_support:Raising.on_failure raised" in server.output()


def test_an_around_task_may_change_the_result(queue, start_server):
    start_server(
        "--workers",
        "1",
        "--import",
        "tests.hooks_support",
        env={"QUEUE_MIDDLEWARE": "tests.hooks_support:Doubling"},
    )
    assert queue.add_task(tasks.add, 2, 3).result(timeout=20) == 10


def test_headers_travel_to_the_task(queue, conn, start_server):
    start_server("--workers", "1", "--import", "tests.hooks_support")
    ref = queue.add_task(hooks_support.headers, _headers={"request_id": "abc", "n": [1, 2]})
    assert ref.result(timeout=20) == {"request_id": "abc", "n": [1, 2]}
    plain = queue.add_task(hooks_support.headers)
    assert plain.result(timeout=20) == {}
    stored = "SELECT headers FROM queued_tasks WHERE id = %s"
    assert one(conn, stored, [plain.task_id]) is None  # nothing stored when empty
    assert one(conn, stored, [ref.task_id]) == {"request_id": "abc", "n": [1, 2]}
    many = queue.add_tasks([(hooks_support.headers, (), {"_headers": {"batch": 1}})] * 3)
    assert [r.result(timeout=20) for r in many] == [{"batch": 1}] * 3


def test_bad_headers_are_refused_at_enqueue(queue):
    with pytest.raises(TaskDefinitionError, match="_headers must be a dict"):
        queue.add_task(tasks.add, 1, 2, _headers="request_id=1")
    with pytest.raises(TaskDefinitionError, match="headers take more than 16384 bytes"):
        queue.add_task(tasks.add, 1, 2, _headers={"big": "x" * 20000})
    with pytest.raises(TaskDefinitionError, match="not JSON-serialisable"):
        queue.add_task(tasks.add, 1, 2, _headers={"when": object()})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tests.nowhere:Audit", "middleware: 'tests.nowhere:Audit' (env QUEUE_MIDDLEWARE):"),
        ("tests.hooks_support:Missing", "has no 'Missing'"),
    ],
)
def test_a_middleware_that_does_not_import_is_exit_2(db_url, start_server, value, message):
    server = start_server(env={"QUEUE_MIDDLEWARE": value}, wait_ready=False)
    assert server.wait(30) == 2
    assert message in server.output()
    assert "Traceback" not in server.output()


def test_sighup_keeps_the_running_configuration_when_a_middleware_does_not_load(
    queue, start_server, tmp_path
):
    config = tmp_path / "queue.toml"
    config.write_text('middleware = ["tests.hooks_support:Doubling"]\n')
    server = start_server("--workers", "1", "--config", str(config))
    assert queue.add_task(tasks.add, 1, 2).result(timeout=20) == 6
    config.write_text('middleware = ["tests.nowhere:Audit"]\n')
    server.signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: configuration not reloaded: middleware:" in server.output())
    assert queue.add_task(tasks.add, 2, 2).result(timeout=20) == 8


def test_config_check_loads_the_middleware(db_url):
    env = {**os.environ, "QUEUE_DATABASE_URL": db_url, "QUEUE_MIDDLEWARE": "tests.nowhere:X"}
    bad = subprocess.run(
        [sys.executable, "-m", "qsup", "config", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "middleware: 'tests.nowhere:X' (env QUEUE_MIDDLEWARE)" in bad.stderr
    env["QUEUE_MIDDLEWARE"] = RECORDING
    good = subprocess.run(
        [sys.executable, "-m", "qsup", "config", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert good.returncode == 0, good.stderr
