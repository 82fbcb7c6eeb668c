"""The chaos harness (scripts/chaos.py) in a short seeded run, and deterministic reproductions
of what it found."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from qsup import repo
from qsup.supervisor import writer
from qsup.supervisor.outbox import Outbox
from tests import tasks
from tests.conftest import task_row, wait_for
from tests.servers import ROOT


@pytest.mark.timeout(120)
def test_short_seeded_chaos_run_holds_every_invariant(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--minutes", "0.5", "--seed", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    elapsed = time.monotonic() - started
    assert proc.stdout, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert "error" not in report, (report, proc.stderr[-3000:])
    # the run did what it says: tasks of every kind, every kind of fault
    kinds = set(report["tasks"]["by_kind"])
    assert {
        "fast",
        "slow",
        "flaky",
        "async",
        "leak",
        "overtime",
        "dep_ok",
        "dep_failed",
        "unique",
        "held",
    } <= kinds, kinds
    assert set(report["faults"]) == {
        "kill_worker",
        "kill_supervisor",
        "kill_supervisor_full",
        "term_restart",
        "hup",
        "stop_worker",
        "terminate_backends",
        "pg_restart_fast",
        "pg_restart_immediate",
    }, report["faults"]
    assert report["tasks"]["total"] >= 100
    failed = {k: v for k, v in report["invariants"].items() if not v["ok"]}
    assert not failed, json.dumps(failed, indent=1, default=str)[:12000]
    assert proc.returncode == 0
    assert elapsed < 90  # the run itself is bounded (about 45 s)


# --- bug A: a dependent enqueued while its dependency is being cancelled stays 'waiting' -----


def test_a_dependent_added_during_the_cascade_is_cancelled(queue, conn, db_url):
    parent = queue.add_task(tasks.always_fail, _max_retries=0)
    child = queue.add_task(tasks.add, 1, 1, _depends_on=[parent])
    server_id = repo.register_server(conn, "test", 1, "host", 1, [])
    conn.execute(
        "UPDATE queued_tasks SET state = 'running', server_id = %s WHERE id = %s",
        (server_id, parent.task_id),
    )
    grandchild = queue.build(tasks.add, (2, 2), {"_depends_on": [child]})
    inserting = psycopg.connect(db_url)  # a transaction that holds child FOR SHARE
    try:
        assert repo.insert_task(inserting, grandchild, None)

        def fail_parent() -> None:
            with psycopg.connect(db_url, autocommit=True) as c:
                outbox = Outbox()
                outbox.fail(parent.task_id, "boom", None, 0.0)
                writer.flush(c, outbox, server_id, None)

        failer = threading.Thread(target=fail_parent)
        failer.start()
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                ).fetchone()[0]
                >= 1
            ),
            timeout=10,
            what="the cascade to wait for the child's lock",
        )
        inserting.commit()
        failer.join(10)
    finally:
        inserting.close()
    assert task_row(conn, parent.task_id)["state"] == "failed"
    assert task_row(conn, child.task_id)["state"] == "cancelled"
    assert task_row(conn, grandchild.id)["state"] == "cancelled"


# --- bug B: a server declared dead while alive never recovers --------------------------------


def test_a_server_declared_dead_while_alive_recovers(queue, conn, start_server, tmp_path):
    server = start_server(
        "--workers", "1", env={"QUEUE_HEARTBEAT_INTERVAL": "0.2", "QUEUE_SERVER_TIMEOUT": "2"}
    )
    # what another server does when this one's heartbeat is stale
    conn.execute(
        "UPDATE queued_task_workers SET is_running = false, date_stopped = now() WHERE pid = %s",
        (server.pid,),
    )
    time.sleep(0.5)
    ref = queue.add_task(tasks.record, str(tmp_path), "once", 1.5)
    assert ref.result(timeout=30) == "once"
    runs = (tmp_path / "once").read_text().split()
    running = conn.execute(
        "SELECT count(*) FROM queued_task_workers WHERE pid = %s AND is_running", (server.pid,)
    ).fetchone()[0]
    assert (len(runs), running) == (1, 1), server.output()[-3000:]
