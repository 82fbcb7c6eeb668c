"""What the operator and the user are told when a worker dies or a task fails, on a real
``qsup serve``: why qsup killed a worker, a SIGKILL from outside, the user's traceback."""

from __future__ import annotations

import os

import qsup
from qsup import repo
from tests import tasks
from tests.conftest import task_row, task_states, wait_for
from tests.e2e.test_malformed_rows import insert_raw

QSUP_DIR = os.path.dirname(qsup.__file__) + os.sep


def _failed(conn, ref) -> dict:
    task_id = getattr(ref, "task_id", ref)
    wait_for(lambda: task_row(conn, task_id)["state"] == "failed", what="the failure")
    return task_row(conn, task_id)


def test_a_worker_killed_for_a_timeout_is_logged_with_that_reason(queue, conn, start_server):
    server = start_server("--workers", "1", env={"QUEUE_TIMEOUT_GRACE": "0.2"})
    ref = queue.add_task(tasks.deaf_to_timeouts, 30, _timeout=0.2, _max_retries=0)
    assert "did not stop" in _failed(conn, ref)["error_message"]
    line = wait_for(
        lambda: [ln for ln in server.output().splitlines() if "died:" in ln], what="the exit line"
    )[0]
    assert "killed by qsup: its task overran its timeout" in line, line
    assert "out of memory" not in server.output()


def test_a_worker_sigkilled_from_outside_is_logged_as_such(queue, conn, start_server, tmp_path):
    server = start_server("--workers", "1")
    ref = queue.add_task(tasks.record, str(tmp_path), "victim", 30, _max_retries=0)
    wait_for(lambda: task_states(conn).get("running") == 1, what="the task to run")
    (victim,) = server.workers()
    victim.kill()
    line = wait_for(
        lambda: [ln for ln in server.output().splitlines() if "died:" in ln], what="the exit line"
    )[0]
    assert "signal SIGKILL, not sent by qsup" in line, line
    assert "killed by qsup" not in line
    assert "not sent by qsup" in _failed(conn, ref)["error_message"]


def test_a_failed_tasks_stored_traceback_starts_at_the_users_function(queue, conn, start_server):
    start_server("--workers", "1")
    for fn, name in ((tasks.always_fail, "always_fail"), (tasks.async_fail, "async_fail")):
        ref = queue.add_task(fn, _max_retries=0)
        error = _failed(conn, ref)["error_message"]
        first_frame = error.splitlines()[1]
        assert first_frame.endswith(f"in {name}") and "tests/tasks.py" in first_frame, error
        assert "qsup/worker" not in error and "asyncio" not in error, error
        (log,) = [
            r["message"] for r in repo.task_logs(conn, ref.task_id) if "failed" in r["message"]
        ]
        # `qsup task logs` shows the same: before, the log kept qsup's own frames
        assert (
            log.rstrip().endswith(error.strip()) and QSUP_DIR not in log and "asyncio" not in log
        ), log


def test_an_error_qsup_raises_itself_is_stored_as_its_message(queue, conn, start_server):
    start_server("--workers", "1")
    # written by hand (enqueue refuses the call): the worker's own check words it
    task_id = insert_raw(conn, "tests.tasks:always_fail", '["one too many"]')
    error = _failed(conn, task_id)["error_message"]
    assert error.strip() == (
        "qsup.errors.TaskDefinitionError: wrong arguments for tests.tasks:always_fail():"
        " too many positional arguments"
    ), error
    (log,) = [r["message"] for r in repo.task_logs(conn, task_id) if "failed" in r["message"]]
    assert log.rstrip().endswith(error.strip()) and "Traceback" not in log, log
