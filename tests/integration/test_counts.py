"""Counts by queue and state that stay cheap: exact up to a cap per pair, estimated from the
planner's statistics beyond it, and marked as such everywhere they are shown."""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

from qsup import counts
from qsup.cli import queue_cmd
from qsup.settings import load_config

with warnings.catch_warnings():  # starlette's TestClient warns about httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def fill(conn, queue: str, state: str, n: int) -> None:
    conn.execute(
        "INSERT INTO queued_tasks (id, name, queue, state, date_done) SELECT gen_random_uuid(),"
        " 'n', %s, %s, CASE WHEN %s IN ('completed', 'failed') THEN now() END"
        " FROM generate_series(1, %s)",
        (queue, state, state, n),
    )


@pytest.fixture
def big(conn):
    """Per pair: 3,000 completed in q1 (past a cap of 1,000), 40 failed, 7 waiting in q2."""
    fill(conn, "q1", "completed", 3000)
    fill(conn, "q1", "failed", 40)
    fill(conn, "q2", "enqueued", 7)
    conn.execute("ANALYZE queued_tasks")
    return conn


@pytest.mark.timeout(30)
def test_pairs_past_the_cap_are_estimated_and_marked(big):
    found = {(c.queue, c.state): c for c in counts.task_counts(big, cap=1000)}
    assert set(found) == {("q1", "completed"), ("q1", "failed"), ("q2", "enqueued")}
    estimate = found[("q1", "completed")]
    assert estimate.estimated and 2500 <= estimate.n <= 3500  # the planner's statistics
    assert found[("q1", "failed")] == counts.Count("q1", "failed", 40, False)
    assert found[("q2", "enqueued")] == counts.Count("q2", "enqueued", 7, False)
    exact = {(c.queue, c.state): c.n for c in counts.task_counts(big, cap=5000)}
    assert exact[("q1", "completed")] == 3000
    assert not any(c.estimated for c in counts.task_counts(big, cap=5000))


@pytest.mark.timeout(30)
def test_before_any_analyze_an_estimate_is_at_least_what_was_counted(conn):
    fill(conn, "q", "completed", 50)  # no ANALYZE: no statistics for the pair
    (only,) = counts.task_counts(conn, cap=10)
    assert only.estimated and only.n >= 11


@pytest.mark.timeout(60)
def test_status_stats_and_metrics_mark_estimates(big, db_url, monkeypatch):
    monkeypatch.setattr(counts, "EXACT_UP_TO", 1000)
    runner = CliRunner()
    shown = runner.invoke(queue_cmd.app, ["status", "--database-url", db_url])
    assert shown.exit_code == 0, shown.output
    assert "~" in shown.output and "estimated" in shown.output
    lines = {tuple(line.split()[:2]): line.split()[2] for line in shown.output.splitlines()[1:]
             if line.split()[:1] in (["q1"], ["q2"])}  # fmt: skip
    assert lines[("q1", "completed")].startswith("~") and lines[("q1", "failed")] == "40"
    report = json.loads(
        runner.invoke(queue_cmd.app, ["status", "--json", "--database-url", db_url]).stdout
    )
    assert report["estimated"] is True
    marks = {(r["queue"], r["state"]): r["estimated"] for r in report["tasks_by_queue"]}
    assert marks == {("q1", "completed"): True, ("q1", "failed"): False, ("q2", "enqueued"): False}
    stats = json.loads(
        runner.invoke(queue_cmd.app, ["stats", "--json", "--database-url", db_url]).stdout
    )
    assert stats["estimated"] is True and stats["estimated_states"] == ["completed"]
    human = runner.invoke(queue_cmd.app, ["stats", "--database-url", db_url]).output
    assert "completed ~" in human and "failed 40" in human

    from qsup.http.app import create_app

    app = create_app(load_config({"database_url": db_url}, environ={}), db_url)
    with TestClient(app) as client:
        body = client.get("/api/stats").json()
        metrics = client.get("/metrics").text
    assert body["estimated"] is True and body["estimated_states"] == ["completed"]
    assert body["states"]["failed"] == 40
    assert 'qsup_tasks_estimated{queue="q1",state="completed"} 1.0' in metrics
    assert 'qsup_tasks_estimated{queue="q1",state="failed"} 0.0' in metrics


@pytest.mark.timeout(30)
def test_oldest_waiting_reads_each_priority_s_first_due_task(conn):
    """The claim index's first entry per priority: the oldest due task whatever its priority,
    delayed ones and finished ones left out."""
    from qsup import repo

    assert repo.oldest_waiting(conn) is None
    rows = [  # (priority, seconds since due, state)
        (5, 10, "enqueued"),
        (0, 300, "enqueued"),
        (0, 20, "enqueued"),
        (-2, -3600, "enqueued"),  # due in an hour
        (9, 9000, "completed"),
    ]
    for priority, age, state in rows:
        conn.execute(
            "INSERT INTO queued_tasks (id, name, priority, state, scheduled_at) VALUES"
            " (gen_random_uuid(), 'n', %s, %s, now() - make_interval(secs => %s))",
            (priority, state, age),
        )
    assert repo.oldest_waiting(conn) == pytest.approx(300, abs=5)
    conn.execute("DELETE FROM queued_tasks WHERE priority = 0")
    assert repo.oldest_waiting(conn) == pytest.approx(10, abs=5)
    conn.execute("DELETE FROM queued_tasks WHERE priority = 5")
    assert repo.oldest_waiting(conn) is None  # only a delayed task waits
