"""A real ``qsup serve`` subprocess on a real PostgreSQL: tasks run, signals drain, crashes heal."""

from __future__ import annotations

import signal

import psutil
import pytest

from qsup import TaskDefinitionError, repo
from tests import tasks
from tests.conftest import task_row, task_states, wait_for


def _done(conn, count: int, state: str = "completed") -> bool:
    return task_states(conn).get(state, 0) == count


def test_sync_and_async_tasks_complete_with_results(queue, conn, start_server):
    server = start_server("--workers", "2")
    sync_ref = queue.add_task(tasks.add, 2, 3)
    async_ref = queue.add_task(tasks.async_add, 4, 5)
    assert sync_ref.result(timeout=20) == 5
    assert async_ref.result(timeout=20) == 9
    row = task_row(conn, sync_ref.task_id)
    assert row["state"] == "completed" and row["attempts"] == 1
    assert row["date_enqueued"] <= row["date_started"] <= row["date_done"]
    assert row["worker_pid"] in {w.pid for w in server.workers()}


def test_a_batch_of_1000_tasks_all_complete(queue, conn, start_server):
    refs = queue.add_tasks([(tasks.add, (i, 1), {}) for i in range(1000)])
    start_server("--workers", "2")
    wait_for(lambda: _done(conn, 1000), timeout=60, what="1000 completed tasks")
    results = dict(conn.execute("SELECT id, result FROM queued_tasks").fetchall())
    assert all(results[r.task_id] == i + 1 for i, r in enumerate(refs))


def test_sigterm_drains_running_tasks_and_exits_0(queue, conn, start_server, tmp_path):
    server = start_server("--workers", "2")
    refs = queue.add_tasks([(tasks.record, (str(tmp_path), f"t{i}", 0.5), {}) for i in range(8)])
    wait_for(lambda: task_states(conn).get("running", 0) == 2, what="2 running tasks")
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    states = task_states(conn)
    assert set(states) <= {"completed", "enqueued"}, states
    assert sum(states.values()) == len(refs)
    assert states.get("completed", 0) >= 2
    ran = {p.name for p in tmp_path.iterdir()}
    completed = {
        r[0] for r in conn.execute("SELECT result FROM queued_tasks WHERE state = 'completed'")
    }
    assert completed <= ran
    attempts = conn.execute(
        "SELECT max(attempts) FROM queued_tasks WHERE state = 'enqueued'"
    ).fetchone()[0]
    assert attempts in (None, 0)  # requeued without using an attempt
    assert conn.execute("SELECT is_running FROM queued_task_workers").fetchone()[0] is False


def test_sigkilled_worker_loses_no_task_and_is_replaced(queue, conn, start_server, tmp_path):
    server = start_server("--workers", "1", "--min-workers", "1")
    ref = queue.add_task(tasks.record, str(tmp_path), "victim", 1.0)
    wait_for(lambda: task_states(conn).get("running") == 1, what="the task to run")
    (victim,) = server.workers()
    victim.kill()
    wait_for(
        lambda: (
            task_row(conn, ref.task_id)["state"] in ("enqueued", "picked_up", "running")
            and task_row(conn, ref.task_id)["attempts"] >= 1
            and repo.task_logs(conn, ref.task_id)
        ),
        what="the task to be requeued",
    )
    logs = repo.task_logs(conn, ref.task_id)
    assert "died" in logs[0]["message"] and "SIGKILL" in logs[0]["message"]
    replacement = wait_for(
        lambda: [w for w in server.workers() if w.pid != victim.pid], what="a replacement worker"
    )
    assert replacement
    assert ref.result(timeout=30) == "victim"  # the retry ran to completion
    assert (tmp_path / "victim").read_text().count("\n") == 1


def test_worker_calling_os_exit_is_retried_and_completes(queue, conn, start_server, tmp_path):
    start_server("--workers", "1")
    ref = queue.add_task(tasks.crash_once, str(tmp_path))
    assert ref.result(timeout=30) == "survived"
    row = task_row(conn, ref.task_id)
    assert row["attempts"] == 2
    assert "exit code 17" in repo.task_logs(conn, ref.task_id)[0]["message"]


def test_failures_are_retried_then_fail_with_the_error(queue, conn, start_server):
    start_server("--workers", "2", env={"QUEUE_RETRY_BACKOFF_BASE": "0.05"})
    flaky = queue.add_task(tasks.fail_until, 3)
    doomed = queue.add_task(tasks.always_fail, _max_retries=1)
    fatal = queue.add_task(tasks.fatal)
    bad_result = queue.add_task(tasks.not_json)
    with pytest.raises(TaskDefinitionError, match="wrong arguments for tests.tasks:add"):
        queue.add_task(tasks.add, 1)  # refused here; a row written by hand: test_malformed_rows
    assert flaky.result(timeout=30) == 3
    assert len(repo.task_logs(conn, flaky.task_id)) == 2
    for ref, attempts, text in [
        (doomed, 2, "always fails"),
        (fatal, 1, "do not retry me"),
        (bad_result, 1, "not JSON-serialisable"),
    ]:

        def failed(task_id: object = ref.task_id) -> bool:
            return task_row(conn, task_id)["state"] == "failed"

        wait_for(failed, what=f"{text} to fail")
        row = task_row(conn, ref.task_id)
        assert row["attempts"] == attempts, text
        assert text in row["error_message"]


def test_timeouts_stop_python_loops_and_kill_stuck_workers(queue, conn, start_server):
    server = start_server("--workers", "1", env={"QUEUE_TIMEOUT_GRACE": "0.5"})
    looping = queue.add_task(tasks.busy_loop, 30, _timeout=0.3, _max_retries=0)
    wait_for(lambda: task_row(conn, looping.task_id)["state"] == "failed", what="timeout")
    assert "TaskTimeout" in task_row(conn, looping.task_id)["error_message"]
    server.wait_workers(1)


def test_polling_without_notify_still_runs_tasks(queue, conn, start_server):
    start_server(
        "--workers",
        "1",
        env={"QUEUE_USE_POSTGRESQL_NOTIFY": "false", "QUEUE_POLLING_INTERVAL": "0.1"},
    )
    assert queue.add_task(tasks.add, 1, 1).result(timeout=20) == 2


def test_children_wait_for_their_parent_and_context_and_logs_persist(queue, conn, start_server):
    start_server("--workers", "2")
    parent = queue.add_task(tasks.spawn_children, 3)
    child_ids = parent.result(timeout=20)
    wait_for(lambda: _done(conn, 4), what="the children to complete")
    for child in child_ids:
        assert str(task_row(conn, child)["parent_task"]) == str(parent.task_id)
    logged = queue.add_task(tasks.log_and_context, 3)
    assert logged.result(timeout=20) == 3
    wait_for(lambda: len(repo.task_logs(conn, logged.task_id)) == 3, what="3 log rows")
    assert task_row(conn, logged.task_id)["context"] == {"progress": 3}


def test_children_get_the_servers_config_file_settings(queue, conn, start_server, tmp_path):
    """A child added by ``current_task.add_task`` takes its defaults from the server's
    ``--config`` file (the worker used to build a fresh Queue from the environment)."""
    config = tmp_path / "queue.toml"
    config.write_text("max_retries = 7\n")
    start_server("--workers", "1", "--config", str(config))
    parent = queue.add_task(tasks.spawn_children, 1)
    (child,) = parent.result(timeout=20)
    assert task_row(conn, child)["max_retries"] == 7


def test_worker_init_runs_in_each_worker_after_the_fork(queue, start_server):
    start_server("--workers", "1", env={"QUEUE_WORKER_INIT": "tests.tasks:init_worker"})
    assert queue.add_task(tasks.initialized_here).result(timeout=20) is True


def test_a_worker_init_that_cannot_be_imported_stops_serve_with_one_line(start_server):
    server = start_server(env={"QUEUE_WORKER_INIT": "tests.tasks:nope"}, wait_ready=False)
    assert server.proc.wait(timeout=20) == 2
    assert server.output().strip().splitlines()[-1] == (
        "qsup: error: worker_init: 'tests.tasks:nope' (env QUEUE_WORKER_INIT):"
        " module 'tests.tasks' has no 'nope'"
    )


def test_ttin_and_ttou_change_max_workers(queue, conn, start_server, tmp_path):
    server = start_server("--workers", "1", "--min-workers", "1")
    server.wait_workers(1)
    server.signal(signal.SIGTTIN)
    wait_for(lambda: "max workers now 2" in server.output(), what="SIGTTIN")
    queue.add_tasks([(tasks.record, (str(tmp_path), f"r{i}", 1.0), {}) for i in range(4)])
    server.wait_workers(2)
    server.signal(signal.SIGTTOU)
    wait_for(lambda: "max workers now 1" in server.output(), what="SIGTTOU")
    wait_for(lambda: _done(conn, 4), what="tasks to finish")
    server.wait_workers(1)


def test_sigusr2_prints_every_threads_stack_and_changes_nothing(queue, start_server):
    server = start_server("--workers", "1")
    (worker,) = server.wait_workers(1)
    server.signal(signal.SIGUSR2)
    wait_for(
        lambda: (
            "supervisor/writer.py" in server.output() and "supervisor/arbiter.py" in server.output()
        ),
        what="the supervisor's threads in the log",
    )
    worker.send_signal(signal.SIGUSR2)
    wait_for(lambda: "qsup/worker/" in server.output(), what="the worker's stack in the log")
    assert queue.add_task(tasks.add, 1, 2).result(timeout=20) == 3
    assert server.proc.poll() is None and worker.is_running()


def test_workers_exit_when_the_supervisor_is_killed(start_server):
    server = start_server("--workers", "2", "--min-workers", "2")
    workers = server.wait_workers(2)
    server.signal(signal.SIGKILL)
    server.wait(10)
    gone, alive = psutil.wait_procs(workers, timeout=2)
    assert alive == []


@pytest.mark.parametrize(
    "bad",
    [
        ["--workers", "0"],
        ["--min-workers", "3", "--workers", "2"],
        ["--import", "no_such_module_xyz"],
    ],
)
def test_bad_serve_flags_exit_2_with_one_line(start_server, bad):
    server = start_server(*bad, wait_ready=False)
    assert server.wait(20) == 2
    lines = server.output().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qsup: error:"), lines


def test_a_job_queued_behind_a_long_task_goes_to_a_worker_that_idles(queue, conn, start_server):
    """Short tasks are handed over several at a time, so a worker may hold jobs behind the task
    it runs. When that task is long and another worker idles with nothing left to take, the
    supervisor calls the queued jobs back and the idle worker runs them."""
    start_server("--workers", "2", "--min-workers", "2")
    for ref in queue.add_tasks([(tasks.noop, (), {})] * 2):  # durations known: batched hand-off
        ref.result(timeout=20)
    refs = queue.add_tasks(
        [  # claimed together, in this order; one worker takes the first two
            (tasks.sleep_then_return, (6.0, "long"), {"_priority": 9}),
            (tasks.sleep_then_return, (0.3, "queued"), {"_priority": 8}),
            (tasks.sleep_then_return, (0.3, "other"), {"_priority": 7}),
        ]
    )
    assert [ref.result(timeout=30) for ref in refs] == ["long", "queued", "other"]
    done = dict(conn.execute("SELECT result, date_done FROM queued_tasks WHERE result <> 'null'"))
    for name in ("queued", "other"):  # not after the long one (6 s)
        assert (done["long"] - done[name]).total_seconds() > 3, f"{name} waited for long"
