"""One real ``qsup serve`` with HTTP, scraped over the network."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import httpx
import psutil

from qsup.api import TaskRef
from tests import tasks
from tests.conftest import task_row, wait_for
from tests.integration.test_http import AUTH, TOKEN, families

TOKEN_ENV = {"QSUP_ADMIN_TOKEN": TOKEN}


def test_an_idle_server_with_http_holds_three_connections(
    queue: Any, conn: Any, start_server: Any
) -> None:
    """The supervisor's LISTEN, claiming and writing connections; the HTTP process connects
    only when a request needs the database."""
    server = start_server("--workers", "2", env=TOKEN_ENV, http=True)  # ready: /livez answers

    def others() -> list[str]:  # qsup's sessions on this database (every one has a name;
        # the test process's own connections, of earlier tests too, have none)
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'qsup-%%'"
            " ORDER BY 1"
        ).fetchall()
        return [r[0].rsplit("-", 1)[0] for r in rows]

    ref = queue.add_task(tasks.add, 2, 3, connection=conn)  # no pool of the test's own
    wait_for(
        lambda: task_row(conn, ref.task_id)["state"] == "completed",
        what="the task (the writer connects)",
    )
    # (a pool opened at start-up connects before the first answer, long before this; the
    # pruner's first round at start-up finds nothing and hangs up)
    seen: list[list[str]] = [[]]

    def three() -> bool:
        seen[0] = others()
        return seen[0] == ["qsup-listen", "qsup-supervisor", "qsup-writer"]

    try:
        wait_for(three, what="three connections (listen, supervisor, writer)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last seen: {seen[0]}") from None
    assert httpx.get(server.url("/health/queue"), timeout=5).status_code == 200
    assert "qsup-http" in others()  # a request that reads the database connects


def test_real_serve_health_and_metrics(queue: Any, start_server: Any) -> None:
    server = start_server("--workers", "2", env=TOKEN_ENV, http=True)

    def healthy() -> Any:
        response = httpx.get(server.url("/health/queue"), timeout=2)
        return response if response.status_code == 200 else None

    response = wait_for(healthy, timeout=30, interval=0.1, what="a healthy server")
    assert response.json()["status"] == "healthy"
    titles = [" ".join(p.cmdline()) for p in server.children()]
    assert any("qsup: http" in t for t in titles), titles
    ref = queue.add_task(tasks.add, 2, 3)
    assert ref.result(timeout=20) == 5
    text = httpx.get(server.url("/metrics"), timeout=5).text
    found = families(text)
    completed = [
        s
        for s in found["qsup_tasks"].samples
        if s.labels == {"state": "completed", "queue": "default"}
    ]
    assert completed and completed[0].value == 1
    assert sum(s.value for s in found["qsup_workers_max"].samples) == 2
    rss = found["qsup_worker_rss_bytes"].samples
    assert rss and all(s.value > 0 for s in rss)
    denied = httpx.post(server.url(f"/api/tasks/{ref.task_id}/retry"), timeout=5)
    assert denied.status_code == 401
    # The HTTP process knows the @task functions of the modules the server imported.
    enqueued = httpx.post(
        server.url("/api/tasks"),
        headers=AUTH,
        timeout=5,
        json={"task": "tests.tasks:decorated", "args": [4]},
    )
    assert enqueued.status_code == 201, enqueued.text
    from_http = TaskRef(queue, uuid.UUID(enqueued.json()["id"]))
    assert from_http.result(timeout=20) == 8  # decorated(4) ran on a worker
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0, server.output()
    for child in server.seen.values():  # the drain ended them, not the fixture's stop()
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
