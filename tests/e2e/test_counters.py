"""Running totals: written by each server's heartbeat, served as Prometheus counters."""

from __future__ import annotations

import warnings

from prometheus_client.parser import text_string_to_metric_families

from qsup.settings import load_config
from tests import tasks
from tests.conftest import task_row, wait_for

with warnings.catch_warnings():  # starlette's TestClient warns about httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_totals_reach_metrics_as_counters(queue, conn, db_url, start_server, tmp_path):
    server = start_server(
        "--workers",
        "1",
        env={
            "QUEUE_HEARTBEAT_INTERVAL": "0.2",
            "QUEUE_RETRY_BACKOFF_BASE": "0.05",
            "QUEUE_SHUTDOWN_TIMEOUT": "1",
        },
    )
    assert queue.add_task(tasks.add, 1, 1).result(timeout=20) == 2
    assert queue.add_task(tasks.fail_until, 2).result(timeout=20) == 2
    failed = queue.add_task(tasks.always_fail, _max_retries=0)
    wait_for(lambda: task_row(conn, failed.task_id)["state"] == "failed", what="failure")
    victim = queue.add_task(tasks.sleep_then_return, 30)
    wait_for(lambda: task_row(conn, victim.task_id)["state"] == "running", what="running")
    server.workers()[0].kill()

    seen: list[dict] = []

    def counters() -> dict:
        row = conn.execute("SELECT counters FROM queued_task_workers").fetchone()
        seen.append(row[0] if row else {})
        found = seen[-1]
        complete = (
            found.get("crashed:signal SIGKILL") == 1
            and found.get("completed") == 2
            and found.get("failed") == 1
            and found.get("retried", 0) >= 2
        )
        return found if complete else {}

    try:
        wait_for(counters, what="the heartbeat to write the totals")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last totals seen: {seen[-1] if seen else None}") from None

    from qsup.http.app import create_app

    app = create_app(load_config({"database_url": db_url}, environ={}), db_url)
    with TestClient(app) as client:
        text = client.get("/metrics").text
    samples = {
        (s.name, s.labels.get("reason", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("qsup_tasks_enqueued_total", "")] == 4
    assert samples[("qsup_tasks_completed_total", "")] == 2
    assert samples[("qsup_tasks_failed_total", "")] == 1
    assert samples[("qsup_workers_crashed_total", "signal SIGKILL")] == 1
