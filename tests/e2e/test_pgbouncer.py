"""Behind a real PgBouncer in transaction mode: servers and producers use the pooled URL, LISTEN
and the liveness lock the direct one (QUEUE_LISTEN_DATABASE_URL). Every enqueue path, the claim
and completion path, logs and context, workflows and limits must work through it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from qsup import Queue, chain, step
from tests import tasks
from tests.conftest import one, task_states, wait_for
from tests.e2e.test_flow_control import most_at_once, spans, write_config
from tests.pgbouncer import BINARY, PgBouncer
from tests.servers import ROOT


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[PgBouncer]:
    if not shutil.which(BINARY):  # .ci/run installs it; a developer's machine may lack it
        pytest.fail(f"{BINARY} not found: apt-get install pgbouncer (as .ci/run does)")
    pooler = PgBouncer(server_url)
    yield pooler
    pooler.stop()


@pytest.fixture
def pooled_url(bouncer: PgBouncer, db_url: str) -> str:
    return bouncer.url(str(conninfo_to_dict(db_url)["dbname"]))


# PgBouncer 1.18 (Debian 12) cannot keep prepared statements in transaction mode
POOLED = {"QUEUE_PREPARED_STATEMENTS": "false"}


@pytest.fixture
def pooled_queue(pooled_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    for name, value in POOLED.items():
        monkeypatch.setenv(name, value)
    q = Queue(pooled_url)
    yield q
    q.close()


def serve_pooled(start_server, pooled_url: str, db_url: str, *args: str, http: bool = False):
    env = {"QUEUE_DATABASE_URL": pooled_url, "QUEUE_LISTEN_DATABASE_URL": db_url, **POOLED}
    return start_server("--workers", "2", *args, env=env, http=http)


@pytest.mark.timeout(90)
def test_every_enqueue_path_and_the_task_path_work_through_the_pooler(
    bouncer, pooled_queue, pooled_url, conn, db_url, start_server
):
    server = serve_pooled(start_server, pooled_url, db_url)
    # well past psycopg's prepare threshold (5): a prepared statement would land on another
    # server connection of the pool and fail there
    assert [pooled_queue.add_task(tasks.add, i, i).result(timeout=20) for i in range(12)] == [
        2 * i for i in range(12)
    ]
    refs = pooled_queue.add_tasks([(tasks.add, (i, 1), {}) for i in range(50)])
    assert [ref.result(timeout=30) for ref in refs] == [i + 1 for i in range(50)]

    async def from_async() -> int:
        ref = await pooled_queue.add_task_async(tasks.async_add, 20, 22)
        return await ref.wait_result(timeout=20)

    assert asyncio.run(from_async()) == 42
    with psycopg.connect(pooled_url) as caller:  # the caller's own transaction, pooled too
        ref = pooled_queue.add_task(tasks.add, 5, 5, connection=caller)
        caller.rollback()
        kept = pooled_queue.add_task(tasks.add, 6, 6, connection=caller)
        caller.commit()
    assert kept.result(timeout=20) == 12
    assert one(conn, "SELECT count(*) FROM queued_tasks WHERE id = %s", (ref.task_id,)) == 0
    logged = pooled_queue.add_task(tasks.log_and_context, 3)
    logged.result(timeout=20)
    logs = "SELECT count(*) FROM queued_task_logs WHERE queued_task_id = %s"
    assert one(conn, logs, (logged.task_id,)) >= 3
    cli = subprocess.run(
        [sys.executable, "-m", "qsup", "enqueue", "tests.tasks:add", "1", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QUEUE_DATABASE_URL": pooled_url, **POOLED},
    )
    assert cli.returncode == 0, cli.stderr
    wait_for(lambda: set(task_states(conn)) == {"completed"}, what="every task completed")
    # LISTEN and the liveness lock bypass the pooler; everything else goes through it
    through_pooler = bouncer.client_names()
    assert f"qsup-supervisor-{server.pid}" in through_pooler
    assert f"qsup-writer-{server.pid}" in through_pooler
    assert not {f"qsup-listen-{server.pid}", f"qsup-liveness-{server.pid}"} & through_pooler
    direct = "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)"
    names = [f"qsup-listen-{server.pid}", f"qsup-liveness-{server.pid}"]
    assert one(conn, direct, (names,)) == 2
    assert server.running()


@pytest.mark.timeout(90)
def test_workflows_limits_and_the_http_api_work_through_the_pooler(
    pooled_queue, pooled_url, conn, db_url, start_server, tmp_path
):
    config = write_config(tmp_path, "[limits.pay]\nconcurrency = 2\n")
    log = str(tmp_path / "spans")
    server = serve_pooled(
        start_server, pooled_url, db_url, "--workers", "4", "--config", str(config), http=True
    )
    flow = pooled_queue.add_workflow(chain(step(tasks.add, 1, 2), step(tasks.add, 10)))
    assert flow.result(timeout=30) == 13
    for _ in range(8):
        pooled_queue.add_task(tasks.span, log, "pay", 0.2, _queue="pay")
    wait_for(lambda: task_states(conn).get("completed") == 10, timeout=60, what="the limited")
    assert most_at_once(spans(Path(log))["pay"]) == 2
    with urllib.request.urlopen(server.url("/api/stats"), timeout=10) as response:
        stats = json.load(response)
    assert stats, "the HTTP API answers through the pooler"
