"""The exactly-once gate of a workflow's failure, straight on the database: a failure seen twice
(a redelivery after a crash, two servers at once) compensates once."""

from __future__ import annotations

import threading

import psycopg
import pytest

from qsup import chain, repo, step
from qsup import workflow_store as store
from qsup.protocol import Finished
from qsup.supervisor import writer
from qsup.supervisor.outbox import Outbox
from tests import tasks
from tests import workflow_tasks as wt
from tests.conftest import one


def _saga(queue, d):
    return queue.add_workflow(
        chain(
            step(wt.journal, d, "a").compensate(step(wt.journal, d, "undo-a")),
            step(wt.journal, d, "b").ignore_result().compensate(step(wt.journal, d, "undo-b")),
            step(wt.journal, d, "c").ignore_result().compensate(step(wt.journal, d, "undo-c")),
        )
    )


def _end(conn, task_id, state, seconds_ago):
    conn.execute(
        "UPDATE queued_tasks SET state = %s, date_done = now() - make_interval(secs => %s),"
        " error_message = CASE WHEN %s = 'failed' THEN 'boom' END WHERE id = %s",
        (state, seconds_ago, state, task_id),
    )


def _compensations(conn):
    return conn.execute(
        "SELECT t.name, t.args->>1, t.state FROM queued_workflow_steps s"
        " JOIN queued_tasks t ON t.id = s.task_id WHERE s.compensates IS NOT NULL"
        " ORDER BY t.state, t.args->>1"
    ).fetchall()


@pytest.mark.timeout(30)
def test_a_failure_settled_twice_compensates_once_newest_first(queue, conn, tmp_path):
    wf = _saga(queue, str(tmp_path))
    a, b, c = wf.task_ids
    _end(conn, a, "completed", 3)
    _end(conn, b, "completed", 2)
    _end(conn, c, "failed", 1)
    for _ in range(2):  # the second is what a redelivery after a crash would do
        with conn.transaction():
            store.settle_failures(conn, [c], "failed", "qsup")
    # undo-b first (enqueued), then undo-a after it; nothing for c, which did not complete
    assert _compensations(conn) == [
        ("tests.workflow_tasks:journal", "undo-b", "enqueued"),
        ("tests.workflow_tasks:journal", "undo-a", "waiting"),
    ]
    undo_a = one(conn, "SELECT s.task_id FROM queued_workflow_steps s JOIN queued_tasks t"
                 " ON t.id = s.task_id WHERE t.args->>1 = 'undo-a'")  # fmt: skip
    assert one(conn, "SELECT tolerant FROM queued_task_dependencies WHERE task_id = %s", (undo_a,))
    row = store.get(conn, wf.workflow_id)
    assert row is not None and (row["state"], row["failed_task"]) == ("failed", c)
    with pytest.raises(Exception, match="already failed"):
        store.cancel_workflow(conn, wf.workflow_id)


@pytest.mark.timeout(30)
def test_two_servers_seeing_failures_at_once_compensate_once(queue, conn, db_url, tmp_path):
    wf = queue.add_workflow(
        chain(
            step(wt.journal, str(tmp_path), "a").compensate(step(wt.journal, str(tmp_path), "u")),
            step(wt.square, 1).ignore_result(),
        )
    )
    a, b = wf.task_ids
    _end(conn, a, "completed", 2)
    _end(conn, b, "failed", 1)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def settle() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as mine, mine.transaction():
                barrier.wait(5)
                store.settle_failures(mine, [b], "failed", None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=settle) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert one(conn, "SELECT count(*) FROM queued_workflow_steps WHERE compensates = %s", (a,)) == 1


@pytest.mark.timeout(30)
def test_a_flush_that_releases_a_dependent_says_so(queue, conn):
    wf = queue.add_workflow(chain(step(tasks.add, 1, 2), step(tasks.add, 3)))
    plain = queue.add_task(tasks.add, 1, 1)
    server_id = repo.register_server(conn, "test", 1, "host", 1, [])
    conn.execute(
        "UPDATE queued_tasks SET state = 'running', server_id = %s WHERE id = ANY(%s)",
        (server_id, [wf.task_ids[0], plain.task_id]),
    )
    outcomes = []
    for task_id in (plain.task_id, wf.task_ids[0]):
        outbox = Outbox()
        outbox.completed_ok(Finished(str(task_id), "ok", 1.0, 2.0, "3"), 9, 0.0)
        writer.flush(conn, outbox, server_id, "qsup")
        outcomes.append(outbox.released)
    assert outcomes == [False, True]  # the arbiter claims at once after the second
    assert one(conn, "SELECT state FROM queued_tasks WHERE id = %s", (wf.task_ids[1],)) == (
        "enqueued"
    )
