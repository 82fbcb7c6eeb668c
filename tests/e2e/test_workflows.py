"""Workflows through the public API against real servers: chains, groups, sagas, cancellation,
a killed server, and the steps' rows as SQL sees them."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import psycopg
import pytest

from qsup import TaskDefinitionError, TaskFailed, chain, group, step
from tests import tasks
from tests import workflow_tasks as wt
from tests.conftest import one, task_row, wait_for
from tests.servers import ROOT

SERVE = ("--import", "tests.workflow_tasks")
FAST_HEARTBEAT = {"QUEUE_HEARTBEAT_INTERVAL": "0.2", "QUEUE_SERVER_TIMEOUT": "2"}


def qsup_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qsup", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip


def journal(tmp_path) -> list[str]:
    path = tmp_path / "journal"
    return path.read_text().split() if path.exists() else []


def states(conn, workflow_id) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state, count(*) FROM queued_tasks WHERE workflow_id = %s GROUP BY state",
        (workflow_id,),
    )
    return dict(rows.fetchall())


@pytest.mark.timeout(60)
def test_a_chain_passes_each_result_to_the_next_step(queue, conn, start_server):
    wf = queue.add_workflow(
        chain(step(wt.collect, "sales"), step(wt.render, fmt="pdf"), step(wt.deliver, to=["a@b"]))
    )
    assert len(wf.task_ids) == 3
    rows = [task_row(conn, i) for i in wf.task_ids]
    assert [r["state"] for r in rows] == ["enqueued", "waiting", "waiting"]
    assert one(conn, "SELECT count(DISTINCT workflow_id) FROM queued_tasks") == 1
    start_server("--workers", "2", *SERVE)
    assert wf.result(timeout=30) == {"document": "sales:6.pdf", "to": ["a@b"]}
    assert task_row(conn, wf.task_ids[1])["result"] == "sales:6.pdf"
    assert task_row(conn, wf.task_ids[1])["args"] == []  # the input is read at the claim


@pytest.mark.timeout(90)
def test_a_group_fans_in_in_its_own_order_and_a_thousand_members_work(queue, conn, start_server):
    # later members finish first: the list still follows the group's order
    slow_first = group(*(step(tasks.sleep_then_return, 0.3 - 0.1 * i, i) for i in range(3)))
    ordered = queue.add_workflow(slow_first.then(step(wt.echo)))
    big = queue.add_workflow(group(*(step(wt.square, i) for i in range(1000))).then(step(wt.total)))
    nested = queue.add_workflow(
        chain(
            step(wt.echo, 3),
            group(step(wt.square), chain(step(wt.echo, 1).ignore_result(), step(wt.square))),
        )
    )
    assert len(big.task_ids) == 1001
    start_server("--workers", "4", *SERVE)
    assert ordered.result(timeout=30) == [0, 1, 2]
    assert big.result(timeout=60) == sum(i * i for i in range(1000))
    assert nested.result(timeout=30) == [9, 1]  # a group's result: its members' results


@pytest.mark.timeout(60)
def test_allow_failures_hands_the_summary_on(queue, conn, start_server):
    members = group(
        step(wt.square, 2), step(wt.square, -1), chain(step(wt.echo, -3), step(wt.square))
    )
    wf = queue.add_workflow(members.then(step(wt.echo), allow_failures=True))
    start_server("--workers", "2", *SERVE)
    summary = wf.result(timeout=30)
    assert summary["results"] == [4, None, None]
    errors = summary["errors"]
    assert [e["index"] for e in errors] == [1, 2]
    assert errors[0]["task_id"] == str(wf.task_ids[1])
    assert errors[0]["error"] == "qsup.errors.NonRetryableError: negative input -1"
    assert errors[1]["task_id"] == str(wf.task_ids[3])  # the chain's failed step


@pytest.mark.timeout(60)
def test_without_allow_failures_a_failed_member_fails_the_workflow(queue, conn, start_server):
    wf = queue.add_workflow(group(step(wt.square, 2), step(wt.square, -1)).then(step(wt.total)))
    start_server("--workers", "2", *SERVE)
    with pytest.raises(TaskFailed, match="negative input -1") as failed:
        wf.result(timeout=30)
    assert failed.value.task_id == wf.task_ids[1]
    then = task_row(conn, wf.task_ids[2])
    assert then["state"] == "cancelled" and str(wf.task_ids[1]) in then["error_message"]


def saga(d: str, *, fail_at: str):
    def act(name: str):
        fn = wt.journal_then_fail if name == fail_at else wt.journal
        return step(fn, d, name).ignore_result()

    return chain(
        act("reserve").compensate(step(wt.journal, d, "release")),
        act("charge").compensate(step(wt.journal, d, "refund")),
        act("ship").compensate(step(wt.journal, d, "unship")),
        act("notify"),
    )


@pytest.mark.timeout(60)
def test_a_failed_saga_compensates_completed_steps_newest_first_once(
    queue, conn, start_server, tmp_path
):
    wf = queue.add_workflow(saga(str(tmp_path), fail_at="ship"))
    start_server("--workers", "2", *SERVE)
    with pytest.raises(TaskFailed, match="ship failed"):
        wf.result(timeout=30)
    wait_for(lambda: len(journal(tmp_path)) >= 5, what="the compensations")
    wait_for(lambda: not states(conn, wf.workflow_id).get("enqueued"), what="nothing queued")
    # ship failed (no compensation for it: it did not complete); notify never ran
    assert journal(tmp_path) == ["reserve", "charge", "ship", "refund", "release"]
    assert one(conn, "SELECT state FROM queued_workflows WHERE id = %s", (wf.workflow_id,)) == (
        "failed"
    )
    assert states(conn, wf.workflow_id) == {"completed": 4, "failed": 1, "cancelled": 1}


@pytest.mark.timeout(60)
def test_cancelling_a_workflow_stops_it_and_compensates(queue, conn, start_server, tmp_path):
    gate = tmp_path / "gate"
    wf = queue.add_workflow(
        chain(
            step(wt.journal, str(tmp_path), "reserve").compensate(
                step(wt.journal, str(tmp_path), "release")
            ),
            step(wt.wait_for_file, str(gate)).ignore_result(),
            step(wt.journal, str(tmp_path), "never").ignore_result(),
        )
    )
    start_server("--workers", "2", *SERVE)
    wait_for(lambda: task_row(conn, wf.task_ids[1])["state"] == "running", what="step 2 runs")
    done = subprocess.run(
        [sys.executable, "-m", "qsup", "workflow", "cancel", str(wf.workflow_id)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    wait_for(lambda: journal(tmp_path) == ["reserve", "release"], what="the compensation")
    wait_for(lambda: task_row(conn, wf.task_ids[1])["state"] == "cancelled", what="step 2 stopped")
    assert task_row(conn, wf.task_ids[2])["state"] == "cancelled"
    with pytest.raises(TaskFailed, match="cancelled"):
        wf.result(timeout=5)
    again = subprocess.run(
        [sys.executable, "-m", "qsup", "workflow", "cancel", str(wf.workflow_id)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "already cancelled" in again.stderr
    assert journal(tmp_path) == ["reserve", "release"]


@pytest.mark.timeout(90)
def test_a_workflow_survives_a_sigkill_of_its_server(queue, conn, start_server, tmp_path):
    gate = tmp_path / "gate"
    wf = queue.add_workflow(
        chain(step(wt.echo, 20), step(wt.wait_for_file, str(gate)).ignore_result(),
              group(step(wt.square, 3).ignore_result(), step(wt.square, 4).ignore_result())
              .then(step(wt.total)))
    )  # fmt: skip
    first = start_server("--workers", "2", *SERVE, env=FAST_HEARTBEAT)
    wait_for(lambda: task_row(conn, wf.task_ids[1])["state"] == "running", what="step 2 runs")
    first.signal(signal.SIGKILL)
    first.wait(10)
    start_server("--workers", "2", *SERVE, env=FAST_HEARTBEAT)
    gate.touch()
    assert wf.result(timeout=60) == 25
    assert task_row(conn, wf.task_ids[0])["attempts"] == 1  # step 1 was not run again


@pytest.mark.timeout(60)
def test_a_task_adds_the_branch_it_chose(queue, conn, start_server):
    even = queue.add_workflow(chain(step(wt.echo, 4), step(wt.branch)))
    odd = queue.add_workflow(chain(step(wt.echo, 5), step(wt.branch)))
    start_server("--workers", "2", *SERVE)
    assert even.result(timeout=30) == "even" and odd.result(timeout=30) == "odd"

    def branch_result(parent):
        row = conn.execute(
            "SELECT w.id FROM queued_workflows w WHERE w.parent_task = %s", (parent,)
        ).fetchone()
        return row and conn.execute(
            "SELECT t.result FROM queued_tasks t JOIN queued_workflow_steps s ON s.task_id = t.id"
            " WHERE s.workflow_id = %s AND s.terminal AND t.state = 'completed'", (row[0],)
        ).fetchone()  # fmt: skip

    assert wait_for(lambda: branch_result(even.task_ids[1]), what="the even branch") == (16,)
    assert wait_for(lambda: branch_result(odd.task_ids[1]), what="the odd branch") == (-5,)


def _nothing_written(conn) -> bool:
    return one(conn, "SELECT count(*) FROM queued_tasks") == 0 and (
        one(conn, "SELECT count(*) FROM queued_workflows") == 0
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: step(lambda: None), "lambdas cannot be tasks"),
        (lambda: group(), "empty group"),
        (lambda: chain(), "empty chain"),
        (lambda: step(wt.echo, object()), "JSON"),
        (lambda: chain(step(wt.echo, 1), group(step(wt.echo, 2), None)), "takes step"),  # type: ignore[arg-type]
        (lambda: step(wt.echo, 1, _parent="x"), "_parent is not a step option"),
    ],
)
def test_bad_workflows_are_refused_before_anything_is_written(queue, conn, make, message):
    with pytest.raises(TaskDefinitionError, match=message):
        queue.add_workflow(make())
    assert _nothing_written(conn)


@pytest.mark.timeout(30)
def test_cycles_closures_and_too_many_steps_are_refused(queue, conn, monkeypatch):
    def closure(x):
        return x

    s = step(wt.echo, 1)
    with pytest.raises(TaskDefinitionError, match="a cycle"):
        queue.add_workflow(chain(s, step(wt.echo), s))
    with pytest.raises(TaskDefinitionError, match="inside a function"):
        queue.add_workflow(chain(step(wt.echo, 1), step(closure)))
    from qsup import Queue

    monkeypatch.setenv("QUEUE_MAX_WORKFLOW_STEPS", "10")
    small = Queue(queue.config.database_url)
    with pytest.raises(TaskDefinitionError, match="more than 10 steps"):
        small.add_workflow(group(*(step(wt.square, i) for i in range(11))))
    small.close()
    assert _nothing_written(conn)


@pytest.mark.timeout(60)
def test_a_workflow_joins_the_callers_transaction(queue, conn, db_url, start_server):
    with psycopg.connect(db_url) as mine:
        queue.add_workflow(chain(step(wt.echo, 1), step(wt.echo)), connection=mine)
        mine.rollback()
    assert _nothing_written(conn)
    with psycopg.connect(db_url) as mine:
        wf = queue.add_workflow(chain(step(wt.echo, 1), step(wt.echo)), connection=mine)
    start_server("--workers", "1", *SERVE)
    assert wf.result(timeout=30) == 1


@pytest.mark.timeout(60)
def test_async_enqueue_and_wait_result(queue, db_url, start_server):
    start_server("--workers", "1", *SERVE)

    async def scenario():
        wf = await queue.add_workflow_async(chain(step(wt.echo, 6), step(wt.square)))
        assert await wf.wait_result(timeout=30) == 36
        async with await psycopg.AsyncConnection.connect(db_url) as mine:
            joined = await queue.add_workflow_async(step(wt.echo, 7), connection=mine)
        assert await joined.wait_result(timeout=30) == 7

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_unique_key_returns_the_unfinished_workflow(queue, conn, start_server, tmp_path):
    gate = tmp_path / "gate"
    first = queue.add_workflow(step(wt.wait_for_file, str(gate)), unique_key="order:1")
    second = queue.add_workflow(step(wt.wait_for_file, str(gate)), unique_key="order:1")
    assert second.workflow_id == first.workflow_id and second.task_ids == first.task_ids
    start_server("--workers", "1", *SERVE)
    gate.touch()
    assert second.result(timeout=30) == str(gate)
    third = queue.add_workflow(step(wt.echo, 3), unique_key="order:1")  # the first finished
    assert third.workflow_id != first.workflow_id and third.result(timeout=30) == 3
    done = qsup_cli("workflow", "cancel", str(first.workflow_id))
    assert done.returncode == 1 and "already completed: nothing to cancel" in done.stderr


@pytest.mark.timeout(60)
def test_workflow_show_json(queue, conn, start_server):
    wf = queue.add_workflow(group(step(wt.square, 2), step(wt.square, -2)).then(step(wt.total)))
    start_server("--workers", "1", *SERVE)
    with pytest.raises(TaskFailed):
        wf.result(timeout=30)
    shown = subprocess.run(
        [sys.executable, "-m", "qsup", "workflow", "show", str(wf.workflow_id), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["id"] == str(wf.workflow_id) and doc["state"] == "failed"
    assert [s["path"] for s in doc["steps"]] == ["0.0", "0.1", "1"]
    assert [s["state"] for s in doc["steps"]] == ["completed", "failed", "cancelled"]
    assert "negative input -2" in doc["steps"][1]["error_message"]
    table = qsup_cli("workflow", "show", str(wf.task_ids[2])[-12:])  # by a step's short id
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"workflow {wf.workflow_id}: failed (3 steps)"
    rows = [line.split()[:4] for line in lines[2:]]  # a tree: members indented under 0
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("0.0", "tests.workflow_tasks:square", "completed"),
        ("0.1", "tests.workflow_tasks:square", "failed"),
        ("1", "tests.workflow_tasks:total", "cancelled"),
    ]
    assert lines[2].startswith("  0.0") and lines[4].startswith("1 ")
    assert "NonRetryableError: negative input -2" in table.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "qsup", "workflow", "show", "0" * 32],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert missing.returncode == 1 and "no workflow" in missing.stderr
    bad = qsup_cli("workflow", "show", "zz")
    assert bad.returncode == 2 and bad.stderr.startswith("qsup: error: workflow id 'zz':")


@pytest.mark.timeout(60)
def test_an_old_finished_workflow_is_pruned_with_its_steps(queue, conn, start_server):
    old = queue.add_workflow(chain(step(wt.echo, 1), step(wt.echo)))
    fresh = queue.add_workflow(step(wt.echo, 2))
    conn.execute(
        "UPDATE queued_tasks SET state = 'completed', date_done = now() - interval '2 hours'"
        " WHERE workflow_id = %s",
        (old.workflow_id,),
    )
    conn.execute(
        "UPDATE queued_workflows SET date_created = now() - interval '2 hours' WHERE id = %s",
        (old.workflow_id,),
    )
    start_server("--workers", "1", *SERVE, env={"QUEUE_RESULT_TTL": "3600"})
    wait_for(
        lambda: (
            one(conn, "SELECT count(*) FROM queued_workflows WHERE id = %s", (old.workflow_id,))
            == 0
        ),
        what="the old workflow to be pruned",
    )
    assert one(conn, "SELECT count(*) FROM queued_workflow_steps") == 1
    assert fresh.result(timeout=20) == 2


@pytest.mark.timeout(90)
def test_a_step_lost_with_its_killed_server_fails_the_saga_once(
    queue, conn, start_server, tmp_path
):
    gate = tmp_path / "gate"  # never created: the step runs until its server is killed
    d = str(tmp_path)
    wf = queue.add_workflow(
        chain(
            step(wt.journal, d, "reserve").compensate(step(wt.journal, d, "release")),
            step(wt.wait_for_file, str(gate), _max_retries=0).ignore_result(),
            step(wt.journal, d, "never").ignore_result(),
        )
    )
    first = start_server("--workers", "2", *SERVE, env=FAST_HEARTBEAT)
    wait_for(lambda: task_row(conn, wf.task_ids[1])["state"] == "running", what="step 2 runs")
    first.signal(signal.SIGKILL)
    first.wait(10)
    start_server("--workers", "2", *SERVE, env=FAST_HEARTBEAT)
    with pytest.raises(TaskFailed, match="died while the task ran"):
        wf.result(timeout=60)
    wait_for(lambda: journal(tmp_path) == ["reserve", "release"], what="the compensation")
    assert task_row(conn, wf.task_ids[2])["state"] == "cancelled"
    compensations = "SELECT count(*) FROM queued_workflow_steps WHERE compensates IS NOT NULL"
    assert one(conn, compensations) == 1


@pytest.mark.timeout(60)
def test_a_workflow_a_task_cannot_add_is_logged_and_the_rest_goes_on(
    queue, conn, start_server, tmp_path
):
    holder = queue.add_task(tasks.sleep_then_return, 60, _unique_key="taken", _delay=3600)
    server = start_server("--workers", "1", *SERVE)
    refused = queue.add_task(wt.branch_with_key, "taken")
    assert refused.result(timeout=30) == "added"  # its own result was written
    wait_for(lambda: "was not written" in server.output(), what="the warning")
    assert one(conn, "SELECT count(*) FROM queued_workflows") == 0
    assert queue.add_task(tasks.add, 2, 3).result(timeout=30) == 5
    assert task_row(conn, holder.task_id)["state"] == "enqueued"
    accepted = queue.add_task(wt.branch_with_key, "free")
    assert accepted.result(timeout=30) == "added"
    wait_for(lambda: one(conn, "SELECT count(*) FROM queued_workflows") == 1, what="the branch")


@pytest.mark.timeout(60)
def test_a_result_that_is_not_json_fails_its_step_and_the_next_never_runs(
    queue, conn, start_server
):
    wf = queue.add_workflow(chain(step(wt.not_json), step(wt.echo)))
    start_server("--workers", "1", *SERVE)
    with pytest.raises(TaskFailed, match="not_json") as failed:
        wf.result(timeout=30)
    assert failed.value.task_id == wf.task_ids[0]
    assert "JSON" in (task_row(conn, wf.task_ids[0])["error_message"] or "")
    assert task_row(conn, wf.task_ids[1])["state"] == "cancelled"
