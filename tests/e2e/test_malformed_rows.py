"""Malformed rows written straight into ``queued_tasks`` (by hand, by another tool, by an
attacker with table access) must not crash the supervisor: each such task ends with a clear
``error_message`` and the other tasks keep running."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from tests import tasks
from tests.conftest import task_row, wait_for

FINAL = ("completed", "failed", "cancelled")


def insert_raw(
    conn: psycopg.Connection[Any], name: str, args: str = "[]", kwargs: str = "{}", **columns: Any
) -> uuid.UUID:
    """Insert a row the way a foreign writer would, bypassing every check of the API."""
    task_id = uuid.uuid4()
    cols = {
        "id": task_id,
        "name": name,
        "args": args,
        "kwargs": kwargs,
        "max_retries": 0,
        **columns,
    }
    names = ", ".join(cols)
    values = ", ".join(f"%({c})s" for c in cols)
    conn.execute(f"INSERT INTO queued_tasks ({names}) VALUES ({values})", cols)  # noqa: S608
    conn.execute("SELECT pg_notify('queue_new_task', 'default')")
    return task_id


def final_row(conn: psycopg.Connection[Any], task_id: uuid.UUID) -> dict[str, Any]:
    return wait_for(
        lambda: (row := task_row(conn, task_id)) and row["state"] in FINAL and row,
        timeout=20,
        what=f"task {task_id} to finish",
    )


# (what, name, args JSON, kwargs JSON, extra columns, words the error must contain)
FAILING: list[tuple[str, str, str, str, dict[str, Any], list[str]]] = [
    ("unknown function", "tests.tasks:no_such_function", "[1, 2]", "{}", {}, ["no_such_function"]),
    ("missing module", "no_such_module_qsup_xyz:run", "[]", "{}", {}, ["no_such_module_qsup_xyz"]),
    ("not a task path", "just-garbage", "[]", "{}", {}, ["just-garbage"]),
    ("not callable", "tests.tasks:_LEAK", "[]", "{}", {}, ["callable"]),
    ("kwargs array", "tests.tasks:add", "[]", "[1, 2]", {}, ["arg"]),
    ("wrong arity", "tests.tasks:add", "[1, 2, 3]", "{}", {}, ["wrong arguments"]),
    ("unknown kwarg", "tests.tasks:add", "[1, 2]", '{"zzz": 3}', {}, ["zzz"]),
]
FAILING += [
    ("args object", "tests.tasks:add", '{"a": 1, "b": 2}', "{}", {}, ["array"]),
    ("args string", "tests.tasks:add", '"ab"', "{}", {}, ["array"]),
]


@pytest.mark.parametrize(
    ("what", "name", "args", "kwargs", "extra", "words"),
    [pytest.param(*f, id=f[0]) for f in FAILING],
)
def test_a_malformed_row_fails_with_a_clear_error(
    queue, conn, start_server, what, name, args, kwargs, extra, words
):
    server = start_server("--workers", "1")
    before = queue.add_task(tasks.add, 1, 1)
    bad = insert_raw(conn, name, args, kwargs, **extra)
    after = queue.add_task(tasks.add, 2, 2)
    row = final_row(conn, bad)
    assert row["state"] == "failed", (what, row)
    message = row["error_message"] or ""
    assert all(w.lower() in message.lower() for w in words), (what, message)
    assert "Traceback" not in message.splitlines()[-1], message
    assert before.result(timeout=20) == 2
    assert after.result(timeout=20) == 4
    assert server.proc.poll() is None, server.output()


def test_many_malformed_rows_at_once_leave_the_server_running(queue, conn, start_server):
    server = start_server("--workers", "2")
    bad = [
        insert_raw(conn, name, args, kwargs, **extra) for _, name, args, kwargs, extra, _ in FAILING
    ]
    good = [queue.add_task(tasks.add, i, i) for i in range(20)]
    for task_id in bad:
        assert final_row(conn, task_id)["state"] == "failed"
    assert [r.result(timeout=20) for r in good] == [2 * i for i in range(20)]
    assert server.proc.poll() is None
    assert "internal error in the supervisor loop" not in server.output()


@pytest.mark.parametrize("priority", [2**31 - 1, -(2**31)])
def test_extreme_priorities_run_in_order(queue, conn, start_server, priority):
    hot = insert_raw(conn, "tests.tasks:add", "[20, 1]", "{}", priority=priority)
    normal = queue.add_task(tasks.add, 1, 1)
    start_server("--workers", "1")
    assert final_row(conn, hot)["state"] == "completed"
    assert task_row(conn, hot)["result"] == 21
    assert normal.result(timeout=20) == 2


@pytest.mark.parametrize("timeout", [-5.0, 0.0, float("nan"), float("inf")])
def test_a_nonsense_timeout_does_not_hang_or_crash_the_worker(queue, conn, start_server, timeout):
    server = start_server("--workers", "1")
    odd = insert_raw(conn, "tests.tasks:add", "[3, 4]", "{}", timeout=timeout)
    row = final_row(conn, odd)
    assert row["state"] in ("completed", "failed"), row
    if row["state"] == "failed":
        assert row["error_message"], row
    assert queue.add_task(tasks.add, 5, 5).result(timeout=20) == 10
    assert server.proc.poll() is None, server.output()


def test_a_negative_max_retries_fails_once_and_does_not_loop(queue, conn, start_server):
    start_server("--workers", "1")
    odd = insert_raw(conn, "tests.tasks:always_fail", max_retries=-3)
    row = final_row(conn, odd)
    assert row["state"] == "failed"
    assert row["attempts"] == 1


def test_a_context_that_is_not_an_object_is_survived(queue, conn, start_server):
    start_server("--workers", "1")
    odd = insert_raw(
        conn, "tests.tasks:log_and_context", "[2]", "{}", context=json.dumps([1, 2, 3])
    )
    row = final_row(conn, odd)
    assert row["state"] in ("completed", "failed"), row
    if row["state"] == "failed":
        assert "context" in (row["error_message"] or "").lower(), row
    assert queue.add_task(tasks.add, 1, 2).result(timeout=20) == 3
