"""Workers run only what their server was given (``allowed_task_modules``): real servers,
rows written by plain SQL as a stranger with INSERT on ``queued_tasks`` would."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg

from tests import tasks
from tests.conftest import task_row, wait_for

REFUSAL = "TaskNotAllowed: os:system is not in the server's modules (allowed_task_modules)"


def insert_row(conn: psycopg.Connection[Any], name: str, args: str, **columns: Any) -> uuid.UUID:
    """A row written straight into the table, with the defaults (3 retries)."""
    task_id = uuid.uuid4()
    cols = {"id": task_id, "name": name, "args": args, **columns}
    names, values = ", ".join(cols), ", ".join(f"%({c})s" for c in cols)
    conn.execute(f"INSERT INTO queued_tasks ({names}) VALUES ({values})", cols)  # noqa: S608
    conn.execute("SELECT pg_notify('queue_new_task', 'default')")
    return task_id


def insert_shell_row(conn: psycopg.Connection[Any], marker: Path, **columns: Any) -> uuid.UUID:
    """``os:system("touch MARKER")``."""
    return insert_row(conn, "os:system", f'["touch {marker}"]', **columns)


def finished(conn: psycopg.Connection[Any], task_id: Any) -> dict[str, Any]:
    return wait_for(
        lambda: (row := task_row(conn, task_id))["state"] in ("completed", "failed") and row,
        what=f"task {task_id} to finish",
    )


def test_a_row_naming_os_system_fails_unrun_and_unretried(conn, start_server, tmp_path):
    start_server("--workers", "1")
    marker = tmp_path / "ran"
    row = finished(conn, insert_shell_row(conn, marker))
    assert row["state"] == "failed" and row["error_message"] == REFUSAL
    assert row["attempts"] == 1 and row["max_retries"] == 3  # retries left, none used
    assert not marker.exists()


def test_the_refusal_comes_before_the_module_is_imported(conn, start_server, tmp_path):
    imported = tmp_path / "imported"
    start_server("--workers", "1", env={"QSUP_TEST_IMPORT_MARKER": str(imported)})
    row = finished(conn, insert_row(conn, "tests.import_marker:run", "[]"))
    assert row["error_message"].startswith("TaskNotAllowed: tests.import_marker:run is not")
    assert not imported.exists()


def test_a_row_claiming_an_allowed_parent_is_refused_all_the_same(
    queue, conn, start_server, tmp_path
):
    start_server("--workers", "1")
    parent = queue.add_task(tasks.add, 1, 2)
    assert parent.result(timeout=20) == 3
    marker = tmp_path / "ran"
    row = finished(conn, insert_shell_row(conn, marker, parent_task=parent.task_id))
    assert row["error_message"] == REFUSAL and not marker.exists()


def test_the_star_runs_any_importable_function_on_purpose(conn, start_server, tmp_path):
    start_server("--workers", "1", env={"QUEUE_ALLOWED_TASK_MODULES": "*"})
    marker = tmp_path / "ran"
    row = finished(conn, insert_shell_row(conn, marker))
    assert row["state"] == "completed" and marker.exists()


def test_a_package_import_gives_its_submodules(queue, conn, start_server, tmp_path):
    """``--import tests`` alone: ``tests.workflow_tasks`` (never imported by the server) runs;
    os:system still does not."""
    from tests import workflow_tasks

    start_server("--workers", "1", imports=["tests"])
    assert queue.add_task(workflow_tasks.square, 7).result(timeout=20) == 49
    marker = tmp_path / "ran"
    assert finished(conn, insert_shell_row(conn, marker))["error_message"] == REFUSAL


def test_a_child_runs_by_the_same_rule_as_its_parent(queue, conn, start_server):
    """Children of allowed tasks from the server's modules run; a child whose function lives
    elsewhere is refused like any row (its parent_task proves nothing)."""
    start_server("--workers", "1")
    assert len(queue.add_task(tasks.spawn_children, 2).result(timeout=20)) == 2
    child_id = queue.add_task(tasks.spawn_foreign_child).result(timeout=20)
    child = finished(conn, child_id)
    assert child["state"] == "failed" and child["attempts"] == 1
    assert child["error_message"] == (
        "TaskNotAllowed: posix:getpid is not in the server's modules (allowed_task_modules)"
    )


def test_the_package_of_the_app_is_given(queue, conn, start_server, tmp_path):
    """``--app tests.fastapi_app:app`` and no --import: the app's package (``tests``) runs."""
    from tests import workflow_tasks

    start_server(
        "--workers", "1", "--app", "tests.fastapi_app:app", http=True, wait_ready=False, imports=()
    )
    assert queue.add_task(workflow_tasks.square, 6).result(timeout=30) == 36
    marker = tmp_path / "ran"
    assert finished(conn, insert_shell_row(conn, marker))["error_message"] == REFUSAL
