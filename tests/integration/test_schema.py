"""The schema against a real PostgreSQL: the seed's monitoring SQL, migrations, query plans."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from qsup import repo
from qsup.db.migrate import migrate
from qsup.sql import migrations, queries
from tests import tasks

SEED_MONITORING = {
    "recent tasks": """
        SELECT id, name, state, date_enqueued, date_started, date_done, parent_task
        FROM queued_tasks
        ORDER BY date_enqueued DESC
        LIMIT 50;""",
    "task logs": """
        SELECT qt.name, qtl.type, qtl.message, qtl.date_created
        FROM queued_task_logs qtl
        JOIN queued_tasks qt ON qtl.queued_task_id = qt.id
        ORDER BY qtl.date_created DESC
        LIMIT 100;""",
    "active workers": """
        SELECT server_name, max_workers, active_workers, idle_workers, is_running, last_heartbeat
        FROM queued_task_workers
        WHERE is_running = true;""",
    "task hierarchy": """
        WITH RECURSIVE task_hierarchy AS (
          SELECT id, name, parent_task, 1 as level, ARRAY[id] as path
          FROM queued_tasks
          WHERE parent_task IS NULL

          UNION ALL

          SELECT qt.id, qt.name, qt.parent_task, th.level + 1, th.path || qt.id
          FROM queued_tasks qt
          JOIN task_hierarchy th ON qt.parent_task = th.id
        )
        SELECT level, REPEAT('  ', level - 1) || name as indented_name, id, path
        FROM task_hierarchy
        ORDER BY path;""",
    "counts by state": "SELECT state, count(*) FROM queued_tasks GROUP BY state;",
    "recent failures": """
        SELECT name, error_message, date_done FROM queued_tasks
        WHERE state = 'failed' AND date_done > NOW() - INTERVAL '1 hour';""",
}


def test_seed_monitoring_queries_run_unchanged(queue, conn):
    parent = queue.add_task(tasks.add, 1, 2)
    child = queue.add_task(tasks.add, 3, 4, _parent=parent)
    conn.execute(
        "INSERT INTO queued_task_logs (queued_task_id, type, message) VALUES (%s, 'info', 'hi')",
        (parent.task_id,),
    )
    repo.register_server(conn, "host:1", 4, "host", 1, [])
    results = {name: conn.execute(sql).fetchall() for name, sql in SEED_MONITORING.items()}
    assert len(results["recent tasks"]) == 2
    assert results["task logs"][0][2] == "hi"
    assert results["active workers"][0][0] == "host:1"
    hierarchy = results["task hierarchy"]
    assert [row[0] for row in hierarchy] == [1, 2]
    assert hierarchy[1][1] == "  tests.tasks:add" and hierarchy[1][2] == child.task_id
    assert dict(results["counts by state"]) == {"enqueued": 1, "waiting": 1}
    assert results["recent failures"] == []


def test_migrations_are_idempotent_and_safe_to_run_concurrently(server_url, testrun_uid, worker_id):
    name = f"qsup_mig_{testrun_uid[:8]}_{worker_id}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def run() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as c:
                applied.append(migrate(c))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert sorted(map(len, applied)) == [0, 0, 0, len(migrations())]
        with psycopg.connect(url, autocommit=True) as c:
            assert migrate(c) == []
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("stats", ["none", "current", "stale"])
def test_claim_reads_the_claim_index_in_order(queue, conn, stats):
    # none: a new table, never analyzed; stale: statistics taken while nothing waited, then a
    # burst (after a quiet moment). The claim must read the claim index in its order rather
    # than sort every waiting task.
    if stats == "stale":
        queue.add_tasks([(tasks.noop, (), {}) for _ in range(20000)])
        conn.execute("UPDATE queued_tasks SET state = 'completed', date_done = now()")
        conn.execute("VACUUM ANALYZE queued_tasks")
    queue.add_tasks([(tasks.noop, (), {}) for _ in range(4000)])
    queue.add_tasks([(tasks.noop, (), {"_delay": 60}) for _ in range(100)])
    if stats == "current":
        conn.execute(
            "UPDATE queued_tasks SET state = 'completed' WHERE ctid IN "
            "(SELECT ctid FROM queued_tasks LIMIT 1000)"
        )
        conn.execute("ANALYZE queued_tasks")
    sid = repo.register_server(conn, "x", 1, "h", 1, [])
    plan_json = conn.execute(
        "EXPLAIN (FORMAT JSON) " + queries()["claim_batch"],
        {"server_id": sid, "queues": [], "limit": 10, "default_timeout": 60.0, "skip": []},
    ).fetchone()[0][0]["Plan"]
    plan = str(plan_json)
    assert "idx_queued_tasks_claim" in plan, plan
    sorted_inputs = [
        child["Node Type"]
        for node in _nodes(plan_json)
        if node["Node Type"] == "Sort"
        for child in node["Plans"]
        if child["Parent Relationship"] == "Outer"
    ]
    assert sorted_inputs == ["CTE Scan"], plan  # only the claimed rows are sorted


def _nodes(plan: dict) -> list[dict]:
    """A JSON plan's nodes, depth first."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


def test_sql_names_used_are_the_names_defined():
    src = Path(__file__).resolve().parents[2] / "src" / "qsup"
    used = set()
    for path in src.rglob("*.py"):
        used.update(re.findall(r'(?:Q|queries\(\))\["(\w+)"\]', path.read_text()))
    assert used, "no query names found: the pattern is stale"
    assert used <= set(queries()), used - set(queries())
    assert set(queries()) <= used | {"listen"} | _named_elsewhere(src), set(queries()) - used


def _named_elsewhere(src: Path) -> set[str]:
    """Query names referenced through helpers other than Q[...] (e.g. by another module)."""
    text = "\n".join(p.read_text() for p in src.rglob("*.py"))
    return {name for name in queries() if f'"{name}"' in text}


@pytest.mark.parametrize("state", ["bogus", "", "COMPLETED"])
def test_unknown_states_are_refused_by_the_database(conn, state):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO queued_tasks (id, name, state) VALUES (gen_random_uuid(), 'x', %s)",
            (state,),
        )


@pytest.mark.parametrize("name", ["complete_batch", "retry_batch", "fail_batch"])
def test_outcome_writes_probe_the_primary_key_per_row_whatever_the_statistics(queue, conn, name):
    # Statistics taken when no task was held (every row finished), then thousands held: the
    # generic plan of a prepared statement must still look each result row up by primary key,
    # never scan the held tasks once per row (that took 30 s per flush in a benchmark).
    queue.add_tasks([(tasks.noop, (), {}) for _ in range(3000)])
    conn.execute("UPDATE queued_tasks SET state = 'completed', date_done = now()")
    conn.execute("ANALYZE queued_tasks")
    conn.execute("UPDATE queued_tasks SET state = 'picked_up', date_done = NULL, server_id = 7")
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", queries()[name])))
    sql = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", queries()[name])
    conn.execute("SET plan_cache_mode = force_generic_plan")  # what a prepared statement gets
    conn.execute(f"PREPARE outcome AS {sql}")
    nulls = ", ".join(["NULL"] * len(names))
    plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN EXECUTE outcome({nulls})"))
    assert "Index Scan using queued_tasks_pkey on queued_tasks q" in plan, plan
    assert "Tid Scan on queued_tasks t" in plan, plan
    assert "Seq Scan on queued_tasks" not in plan, plan
