"""Every hot statement keeps its index plan on a table of 100,000 finished tasks, whatever the
statistics: none (a fresh table, never analysed: autovacuum off, or not yet run), stale (taken
while every task was finished, then tasks wait and are held), or a generic plan cached while
the table was still empty (what a prepared statement keeps until the next ANALYZE)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from qsup import repo
from qsup.db.migrate import migrate
from qsup.sql import queries

FINISHED = 100_000
HELD = 50  # held by the server below, in every one of the hot statements' parameters
SERVER = 1
NOW = datetime.now(UTC)


def _params(held: list[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """Realistic parameters of each hot statement (what runs per task or per tick)."""
    n = len(held)
    task = {"id": uuid.uuid4(), "name": "t:x", "queue": "default", "priority": 0, "args": "[]",
            "kwargs": "{}", "eta": None, "delay": 0.0, "max_retries": 3, "timeout": None,
            "unique_key": "k", "context": "{}", "channel": "qsup", "parent": None,
            "depends_on": held[:2], "headers": None, "concurrency_key": None}  # fmt: skip
    results = [{"id": str(i), "result": 1, "started": 1.0, "done": 2.0, "pid": 9, "cpu": 0.1,
                "peak": 10**8, "growth": 0} for i in held]  # fmt: skip
    usage = {"crashes": [None] * n, "cpu": [0.1] * n, "peak": [10**8] * n, "growth": [0] * n}
    return {
        "claim_batch": {"server_id": SERVER, "queues": [], "limit": 100, "default_timeout": 60.0,
                        "skip": ["limited"]},
        "next_due_in": {"queues": [], "skip": ["limited"]},
        "flow_state": {},
        "mark_running": {"ids": held, "started": [NOW] * n, "pids": [9] * n, "server_id": SERVER},
        "complete_batch": {"rows": json.dumps(results), "server_id": SERVER},
        "retry_batch": {"ids": held, "delays": [1.0] * n, "errors": ["e"] * n,
                        "server_id": SERVER, **usage},  # fmt: skip
        "fail_batch": {"ids": held, "errors": ["e"] * n, "started": [NOW] * n,
                       "pids": [9] * n, "server_id": SERVER, **usage},  # fmt: skip
        "release_batch": {"ids": held, "server_id": SERVER},
        "hand_on_slots": {"ids": held, "server_id": SERVER},
        "release_unknown": {"server_id": SERVER, "known": held},
        "cancel_batch": {"ids": held, "server_id": SERVER},
        "save_reports": {"ids": held, "contexts": ["{}"] * n, "progress": [None] * n},
        "answer_probes": {"ids": held, "stacks": ["s"] * n, "cpu": [0.1] * n, "rss": [1] * n,
                          "running": [1.0] * n},  # fmt: skip
        "stranded_work": {"after": 60.0, "server_timeout": 90.0, "scan_limit": 100_000},
        "rescue_orphans": {"max_crashes": 2},
        "heartbeat": {"server_id": SERVER, "max_workers": 4, "active": 1, "idle": 3,
                      "counters": "{}", "queues": [], "timeout": 30.0, "may_declare": True,
                      "lock_class": repo.LIVENESS_CLASS},
        "lock_free_servers": {"server_id": SERVER, "lock_class": repo.LIVENESS_CLASS},
        "insert_plain_task": task,
        "insert_task": task,
        "find_unfinished_by_unique_key": {"unique_key": "k"},
        "oldest_waiting": {},
        "series_record": {"server_id": SERVER, "completed": held, "failed": held[:1],
                          "retried": held[1:2]},
        "task_counts": {"cap": 10000},
        "insert_workflow": {"id": uuid.uuid4(), "label": "t:x", "output": "null", "parent": None,
                            "unique_key": None, "tasks": "[]", "steps": "[]", "edges": "[]",
                            "queues": [], "channel": "qsup"},
        "workflow_after_failure": {"ids": held[:2], "state": "failed"},
        "workflow_stop_rest": {"workflows": held[:1], "reason": "r"},
        "workflow_compensate": {"workflows": held[:1]},
        "workflow_outcome": {"id": uuid.uuid4(), "ids": json.dumps([str(i) for i in held])},
        "workflow_steps": {"id": uuid.uuid4()},
        "workflow_find_unfinished_by_key": {"unique_key": "k"},
    }  # fmt: skip


@pytest.fixture
def fresh(server_url: str, testrun_uid: str, worker_id: str) -> Iterator[psycopg.Connection[Any]]:
    """A database of its own: its queued_tasks is new, never analysed, never autovacuumed."""
    name = f"qsup_plan_{testrun_uid[:8]}_{worker_id}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(make_conninfo(server_url, dbname=name), autocommit=True) as conn:
            migrate(conn)
            for table in ("queued_tasks", "queued_task_workers", "queued_task_dependencies"):
                conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            conn.execute(
                "INSERT INTO queued_task_workers (id, server_name) VALUES (%s, 'h:1')", (SERVER,)
            )
            yield conn
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _add_finished(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO queued_tasks (id, name, state, date_started, date_done, result, server_id,"
        " worker_pid, attempts, unique_key)"
        " SELECT gen_random_uuid(), 'tests.tasks:noop', 'completed', now() - interval '2 h',"
        " now() - interval '2 h', '1', 1, 9, 1, 'k' FROM generate_series(1, %s)",
        (FINISHED,),
    )


def _add_live(conn: psycopg.Connection[Any]) -> list[uuid.UUID]:
    """Tasks waiting (some delayed) and held by the server; returns the held ones' ids."""
    conn.execute(
        "INSERT INTO queued_tasks (id, name, scheduled_at, unique_key)"
        " SELECT gen_random_uuid(), 'tests.tasks:noop', now() + (i % 2) * interval '1 h',"
        " 'k' || i FROM generate_series(1, 400) AS i"
    )
    rows = conn.execute(
        "INSERT INTO queued_tasks (id, name, state, server_id, attempts, date_started)"
        " SELECT gen_random_uuid(), 'tests.tasks:noop', 'running', %s, 1, now()"
        " FROM generate_series(1, %s) RETURNING id",
        (SERVER, HELD),
    ).fetchall()
    return [row[0] for row in rows]


def _positional(sql: str) -> tuple[str, list[str]]:
    """The statement with $n placeholders (for PREPARE), and the parameter names in order."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    return re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql), names


def _seq_scans(plan: dict[str, Any]) -> list[str]:
    """The sequential scans of queued_tasks anywhere in a JSON plan (CTEs and subplans too)."""
    found = []
    if plan["Node Type"] == "Seq Scan" and plan.get("Relation Name") == "queued_tasks":
        found.append(plan.get("Alias", "queued_tasks"))
    for child in plan.get("Plans", []):
        found += _seq_scans(child)
    return found


def _explain(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> dict[str, Any]:
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
    assert row is not None
    return row[0][0]["Plan"]


def _prepare_generic(conn: psycopg.Connection[Any], names: list[str]) -> list[str]:
    """Prepare the statements and plan each once now; returns the EXECUTE of each."""
    conn.execute("SET plan_cache_mode = force_generic_plan")
    executes = []
    for index, name in enumerate(names):
        sql, params = _positional(queries()[name])
        conn.execute(f"PREPARE hot_{index} AS {sql}")
        nulls = f"({', '.join(['NULL'] * len(params))})" if params else ""
        executes.append(f"EXECUTE hot_{index}{nulls}")
        _explain(conn, executes[-1])  # builds and caches the generic plan
    return executes


@pytest.mark.parametrize("stats", ["none", "stale", "generic"])
def test_hot_statements_never_scan_the_whole_table(fresh, stats):
    conn = fresh
    names = list(_params([]))
    # generic: prepared and planned while the table was empty, then kept while it grew.
    executes = _prepare_generic(conn, names) if stats == "generic" else []
    _add_finished(conn)
    if stats == "stale":
        conn.execute("ANALYZE queued_tasks")  # every task finished: nothing waits or is held
    held = _add_live(conn)
    analysed = conn.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'queued_tasks'")
    assert ((analysed.fetchone() or [0])[0] > 0) == (stats == "stale")
    bad = {}
    for index, (name, params) in enumerate(_params(held).items()):
        if executes:
            plan = _explain(conn, executes[index])
        else:
            plan = _explain(conn, queries()[name], params)
        if scans := _seq_scans(plan):
            bad[name] = scans
    assert not bad, f"Seq Scan on queued_tasks ({stats} statistics) in: {bad}"


AUTO_EXPLAIN = (
    "auto_explain.log_min_duration = 0",
    "auto_explain.log_format = json",
    "auto_explain.log_nested_statements = on",
    "client_min_messages = log",  # its plans come back as notices
)


def _nested_seq_scans(conn: psycopg.Connection[Any], sql: str, params: Any) -> list[str]:
    """Run ``sql`` (rolled back) with auto_explain on nested statements: the plans of the
    statements inside a PL/pgSQL function, which EXPLAIN of the call does not show."""
    plans: list[dict[str, Any]] = []

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if text.startswith("duration:") and "{" in text:
            plans.append(json.loads(text[text.index("{") :])["Plan"])

    conn.add_notice_handler(collect)
    try:
        with conn.transaction(force_rollback=True):
            for setting in AUTO_EXPLAIN:
                conn.execute(f"SET LOCAL {setting}")
            conn.execute(sql, params).fetchall()
    finally:
        conn.remove_notice_handler(collect)
    assert len(plans) > 3, "auto_explain showed no nested statement"
    return [scan for plan in plans for scan in _seq_scans(plan)]


@pytest.mark.parametrize("stats", ["none", "stale"])
def test_the_limited_claim_never_scans_the_whole_table(fresh, stats):
    conn = fresh
    conn.execute("LOAD 'auto_explain'")
    _add_finished(conn)
    if stats == "stale":
        conn.execute("ANALYZE queued_tasks")
    _add_live(conn)
    conn.execute(
        "INSERT INTO queued_tasks (id, name, queue, concurrency_key)"
        " SELECT gen_random_uuid(), 'tests.tasks:noop', q, 'k' || (i % 3)"
        " FROM generate_series(1, 200) AS i, unnest(ARRAY['limited', 'ahead']) AS q"
    )
    conn.execute(
        "INSERT INTO queued_task_queues (queue, file_concurrency, file_rate, file_period,"
        " file_key_concurrency) VALUES ('limited', 50, 100, 60, 2), ('ahead', 4, NULL, NULL, NULL)"
    )
    # 'ahead' fills its 4 slots and takes 4 more ahead of them (its own loop of rounds)
    params = {"server_id": SERVER, "queues": ["limited", "ahead"], "want": 14,
              "default_timeout": 60.0, "finished": [], "aheads": [0, 0]}  # fmt: skip
    assert _nested_seq_scans(conn, queries()["claim_limited"], params) == []
