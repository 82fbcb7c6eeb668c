"""The pruner's rounds against a real PostgreSQL: batches until done, everything that grows per
task, never an unfinished task, one within the TTL, or a row another transaction holds."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from qsup import series
from qsup.supervisor import retention
from qsup.supervisor.retention import Pruner
from tests.conftest import one, wait_for

TTL = 3600.0
OLD = "now() - interval '2 hours'"


def add(conn: psycopg.Connection[Any], state: str, done: str | None, count: int = 1) -> list[Any]:
    """``count`` tasks in ``state``, finished at ``done`` (an SQL expression, or never)."""
    return [
        r[0]
        for r in conn.execute(
            "INSERT INTO queued_tasks (id, name, state, queue, args, kwargs, date_done,"
            " date_enqueued) SELECT gen_random_uuid(), 'x', %s, 'q', '[]', '{}',"
            f" {done or 'NULL'}, {OLD} FROM generate_series(1, %s) RETURNING id",
            (state, count),
        )
    ]


def ids_left(conn: psycopg.Connection[Any]) -> set[Any]:
    return {r[0] for r in conn.execute("SELECT id FROM queued_tasks")}


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(retention, "BATCH", 50)
    return 50


@pytest.mark.timeout(30)
def test_a_round_deletes_batch_after_batch_everything_that_grows_per_task(
    conn, db_url, small_batches
):
    old = add(conn, "completed", OLD, 180) + add(conn, "failed", OLD, 30)
    old += add(conn, "cancelled", OLD, 20)  # 230: five batches of 50
    kept = add(conn, "completed", "now()", 3)  # within the TTL
    kept += add(conn, "enqueued", None) + add(conn, "running", None) + add(conn, "waiting", None)
    kept += add(conn, "picked_up", OLD)  # a stray date_done on an unfinished task
    conn.execute(
        "INSERT INTO queued_task_logs (queued_task_id, message) SELECT unnest(%s::uuid[]), 'm'",
        (old[:100] + kept,),
    )
    conn.execute(
        "INSERT INTO queued_task_dependencies (task_id, depends_on) VALUES (%s, %s), (%s, %s)",
        (old[0], old[1], kept[-4], kept[0]),
    )
    workflow = uuid.uuid4()
    conn.execute(
        "INSERT INTO queued_workflows (id, label, output, step_count, date_created)"
        f" VALUES (%s, 'w', '[]', 2, {OLD})",
        (workflow,),
    )
    conn.execute(
        "INSERT INTO queued_workflow_steps (task_id, workflow_id, position, path)"
        " VALUES (%s, %s, 0, '0'), (%s, %s, 1, '1')",
        (old[5], workflow, old[6], workflow),
    )
    conn.execute(
        "INSERT INTO queued_task_queues (queue, rate, period) VALUES ('slow', 1, 86400);"
        f" INSERT INTO queued_task_starts (queue, at, n) VALUES ('gone', {OLD}, 1),"
        f" ('slow', {OLD}, 1), ('gone', now(), 1)"
    )
    buckets = [0] * series.BUCKETS
    conn.execute(
        "INSERT INTO queued_task_minutes (minute, queue, name, run_buckets, wait_buckets,"
        " cpu_buckets) SELECT date_trunc('minute', at), 'q', 'x', %s, %s, %s"
        f" FROM unnest(ARRAY[{OLD}, now()]) AS at",
        (buckets, buckets, buckets),
    )

    pause = Pruner(db_url, "test-pruner", TTL).run_round(conn)

    assert ids_left(conn) == set(kept)
    assert one(conn, "SELECT count(*) FROM queued_task_logs") == len(kept)
    assert one(conn, "SELECT count(*) FROM queued_task_dependencies") == 1
    assert one(conn, "SELECT count(*) FROM queued_workflow_steps") == 0
    assert one(conn, "SELECT count(*) FROM queued_workflows") == 0
    # the stale start of the unlimited queue went; the day-long window's and the new one stay
    assert one(conn, "SELECT count(*) FROM queued_task_starts") == 2
    assert one(conn, "SELECT count(*) FROM queued_task_minutes") == 1  # the old minute went
    assert pause == 60.0  # the fresh tasks pass the TTL in an hour: the longest sleep


@pytest.mark.timeout(30)
def test_a_round_skips_rows_others_hold_and_waits_for_none(conn, db_url, small_batches):
    old = add(conn, "completed", OLD, 120)
    with psycopg.connect(db_url) as holder:  # a transaction holds one finished row
        holder.execute("SELECT 1 FROM queued_tasks WHERE id = %s FOR UPDATE", (old[7],))
        started = time.monotonic()
        Pruner(db_url, "test-pruner", TTL).run_round(conn)
        assert time.monotonic() - started < 5
        assert ids_left(conn) == {old[7]}
    Pruner(db_url, "test-pruner", TTL).run_round(conn)
    assert ids_left(conn) == set()


@pytest.mark.timeout(30)
def test_one_server_at_a_time_and_the_others_scan_nothing(conn, db_url, small_batches):
    add(conn, "completed", OLD, 60)
    with psycopg.connect(db_url) as other:  # another server's batch has the turn
        other.execute("SELECT pg_advisory_xact_lock(%s)", (retention.TURN_KEY,))
        assert Pruner(db_url, "test-pruner", TTL).run_round(conn) >= 1.0
        assert one(conn, "SELECT count(*) FROM queued_tasks") == 60
        params = {"key": retention.TURN_KEY, "ttl": TTL, "limit": 50}
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + retention.Q["prune_tasks_batch"], params
            )
        )
        lines = plan.splitlines()
        expired = next(i for i, line in enumerate(lines) if "date_done <" in line)
        # the plan node that filters the expired rows (an index or a bitmap heap scan)
        scan = next(line for line in reversed(lines[:expired]) if " on queued_tasks q " in line)
        assert "never executed" in scan, plan  # not a scan of every expired row


@pytest.mark.timeout(30)
def test_the_thread_prunes_on_its_own_connection_and_stops(conn, db_url):
    add(conn, "completed", OLD, 10)
    names = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qsup-pruner-test'"
    pruner = Pruner(db_url, "qsup-pruner-test", 5.0)  # sleeps 5 s: keeps its connection
    pruner.start()
    try:
        wait_for(lambda: one(conn, "SELECT count(*) FROM queued_tasks") == 0, what="the prune")
        assert one(conn, names) == 1
    finally:
        pruner.close()
    assert not any(t.name == "qsup-pruner" for t in threading.enumerate())
    wait_for(lambda: one(conn, names) == 0, what="the pruner's connection to close")


@pytest.mark.timeout(30)
def test_a_long_sleep_hangs_up(conn, db_url):
    add(conn, "completed", OLD, 10)
    names = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qsup-pruner-test'"
    pruner = Pruner(db_url, "qsup-pruner-test", TTL)  # nothing left: sleeps a minute
    pruner.start()
    try:
        wait_for(lambda: one(conn, "SELECT count(*) FROM queued_tasks") == 0, what="the prune")
        wait_for(lambda: one(conn, names) == 0, what="the idle pruner to hang up")
        assert pruner._thread.is_alive()
    finally:
        pruner.close()
