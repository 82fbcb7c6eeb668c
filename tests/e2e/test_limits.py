"""Limits and the trust boundary, enforced by real workers."""

from __future__ import annotations

import psutil

from qsup import repo
from tests import tasks
from tests.conftest import task_row, wait_for


def _failed_with(conn, ref, text: str) -> None:
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "failed", what=text)
    assert text in task_row(conn, ref.task_id)["error_message"]


def test_an_allow_list_names_the_modules_exactly(queue, conn, start_server):
    """A list replaces the server's own modules: tests.tasks is imported, but not listed."""
    start_server("--workers", "1", env={"QUEUE_ALLOWED_TASK_MODULES": "tests.edge_tasks"})
    ref = queue.add_task(tasks.add, 1, 2)
    _failed_with(conn, ref, "TaskNotAllowed: tests.tasks:add is not in the server's modules")
    assert task_row(conn, ref.task_id)["attempts"] == 1  # not retried


def test_results_and_logs_are_bounded(queue, conn, start_server):
    start_server(
        "--workers", "1", env={"QUEUE_MAX_RESULT_BYTES": "100", "QUEUE_MAX_LOGS_PER_TASK": "2"}
    )
    assert queue.add_task(tasks.big_result, 10).result(timeout=20) == "x" * 10
    _failed_with(conn, queue.add_task(tasks.big_result, 1000), "QUEUE_MAX_RESULT_BYTES")
    chatty = queue.add_task(tasks.log_and_context, 5)
    assert chatty.result(timeout=20) == 5
    logs = wait_for(
        lambda: (
            len(repo.task_logs(conn, chatty.task_id)) == 3 and repo.task_logs(conn, chatty.task_id)
        ),
        what="3 log rows",
    )
    assert "log limit of 2 rows reached" in logs[-1]["message"]


def test_orphaned_grandchildren_are_reaped(queue, conn, start_server, tmp_path):
    server = start_server("--workers", "1")
    queue.add_task(tasks.orphan_grandchild, str(tmp_path)).result(timeout=20)
    pid = int(
        wait_for(
            lambda: (tmp_path / "grandchild").exists() and (tmp_path / "grandchild").read_text(),
            what="the grandchild",
        )
    )
    assert psutil.Process(pid).ppid() == server.pid  # adopted by the supervisor (subreaper)

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == "gone"
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, timeout=10, what="the orphan to be reaped")
    assert server.proc.poll() is None


def test_a_result_jsonb_cannot_store_fails_the_task_not_the_batch(queue, conn, start_server):
    start_server("--workers", "1")
    refs = [queue.add_task(tasks.add, i, 1) for i in range(3)]
    bad = queue.add_task(tasks.nul_result)
    _failed_with(conn, bad, "NUL character")
    assert [r.result(timeout=20) for r in refs] == [1, 2, 3]
