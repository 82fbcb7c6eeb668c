"""Across processes: request-scoped headers from FastAPI, OpenTelemetry spans from the enqueue
to the worker, and the lifecycle events of JSON logs (SPEC §12)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qsup import Queue
from qsup.log import EVENTS
from tests import hooks_support, tasks
from tests.conftest import one, task_row, wait_for
from tests.servers import ROOT

pytestmark = pytest.mark.timeout(90)
HEADERS = "SELECT headers FROM queued_tasks WHERE id = %s"


def test_fastapi_requests_carry_their_request_id_into_tasks(queue, conn):
    from tests.fastapi_headers_app import app

    with TestClient(app) as client:
        given = client.post("/headers", headers={"x-request-id": "req-42"}).json()["task_id"]
        other = client.post("/elsewhere", headers={"x-request-id": "req-43"}).json()["task_id"]
        fresh = client.post("/headers").json()["task_id"]
    assert one(conn, HEADERS, [given]) == {"given": 1, "request_id": "req-42"}
    assert one(conn, HEADERS, [other]) == {"request_id": "req-43"}
    assert len(one(conn, HEADERS, [fresh])["request_id"]) == 32  # the middleware's own
    assert one(conn, HEADERS, [queue.add_task(tasks.add, 1, 2).task_id]) is None  # no request


# --- OpenTelemetry -----------------------------------------------------------------------------

_provider: dict[str, Any] = {}


@pytest.fixture
def exporter() -> Any:
    """This process's SDK provider (set once: OpenTelemetry refuses a second), emptied."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if not _provider:
        _provider["exporter"] = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_provider["exporter"]))
        trace.set_tracer_provider(provider)
    _provider["exporter"].clear()
    return _provider["exporter"]


def test_a_task_runs_in_a_consumer_span_whose_parent_is_the_producer_span(
    queue, conn, start_server, tmp_path, exporter
):
    from opentelemetry import trace

    spans_file = tmp_path / "spans.jsonl"
    start_server(
        "--workers",
        "1",
        "--import",
        "tests.hooks_support",
        env={
            "QUEUE_OTEL": "true",
            "QUEUE_WORKER_INIT": "tests.hooks_support:otel_init",
            "QSUP_TEST_SPANS": str(spans_file),
        },
    )
    traced = Queue(config=queue.config.replace(otel=True))
    with trace.get_tracer("test").start_as_current_span("POST /signup") as request:
        ok = traced.add_task(tasks.add, 1, 2)
        bad = traced.add_task(tasks.always_fail, _max_retries=1)
    assert ok.result(timeout=20) == 3
    wait_for(lambda: task_row(conn, bad.task_id)["state"] == "failed", what="the failure")
    assert "traceparent" in one(conn, HEADERS, [ok.task_id])

    produced = {s.attributes["messaging.message.id"]: s for s in exporter.get_finished_spans()
                if s.kind.name == "PRODUCER"}  # fmt: skip
    producer = produced[str(ok.task_id)]
    assert producer.name == "qsup enqueue tests.tasks:add"
    assert producer.parent.span_id == request.get_span_context().span_id

    wait_for(lambda: len(hooks_support.spans(str(spans_file))) == 3, what="three consumer spans")
    consumed = hooks_support.spans(str(spans_file))
    run = next(s for s in consumed if s["attributes"]["messaging.message.id"] == str(ok.task_id))
    assert run["name"] == "qsup run tests.tasks:add" and run["kind"] == "CONSUMER"
    assert run["trace_id"] == f"{producer.context.trace_id:032x}"
    assert run["parent_id"] == f"{producer.context.span_id:016x}"
    assert run["pid"] == task_row(conn, ok.task_id)["worker_pid"]
    assert run["attributes"] == {
        "messaging.system": "qsup",
        "messaging.operation.type": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": str(ok.task_id),
        "qsup.task.id": str(ok.task_id),
        "qsup.task.name": "tests.tasks:add",
        "qsup.task.queue": "default",
        "qsup.task.attempt": 1,
        "qsup.task.outcome": "ok",
    }
    assert run["status"] == "UNSET" and run["events"] == []

    attempts = [s for s in consumed if s["attributes"]["messaging.message.id"] == str(bad.task_id)]
    assert [s["attributes"]["qsup.task.attempt"] for s in attempts] == [1, 2]
    producer = produced[str(bad.task_id)]
    for span in attempts:  # each attempt a child of the one producer span
        assert span["parent_id"] == f"{producer.context.span_id:016x}"
        assert span["status"] == "ERROR" and span["events"] == ["exception"]
        assert span["attributes"]["qsup.task.outcome"] == "error"


def test_otel_without_the_api_installed_is_a_clear_error(db_url, tmp_path):
    import subprocess
    import sys

    # a module named opentelemetry that is not the API stands in for a missing install
    (tmp_path / "opentelemetry").mkdir()
    (tmp_path / "opentelemetry" / "__init__.py").write_text("")
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "QUEUE_OTEL": "1", "QUEUE_DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-m", "qsup", "serve", "--no-http"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "otel = true needs the OpenTelemetry API: pip install 'qsup[otel]'" in done.stderr
    assert "Traceback" not in done.stderr


# --- lifecycle events ----------------------------------------------------------------------


def events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines that carry an event: ``{event, task_id, level, message}``."""
    found = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)["record"]
        except (ValueError, KeyError):
            continue
        extra = record["extra"]
        if "event" in extra:
            found.append(
                {
                    "event": extra["event"],
                    "task_id": extra.get("task_id"),
                    "level": record["level"]["name"],
                    "message": record["message"],
                }
            )
    return found


def test_json_logs_carry_the_lifecycle_events(queue, conn, start_server, tmp_path):
    server = start_server(
        "--workers",
        "1",
        env={
            "QSUP_LOG_FORMAT": "json",
            "QUEUE_MAX_TASKS_PER_WORKER": "3",
            "QUEUE_TIMEOUT_GRACE": "0.3",
            "QUEUE_RETRY_BACKOFF_BASE": "0.01",
        },
    )
    log = server.log_path
    ok = queue.add_task(tasks.add, 1, 2)
    retried = queue.add_task(tasks.fail_until, 2, _max_retries=1)
    failed = queue.add_task(tasks.always_fail, _max_retries=0)
    slow = queue.add_task(tasks.sleep_then_return, 30, _timeout=0.2, _max_retries=0)
    deaf = queue.add_task(tasks.deaf_to_timeouts, 30, _timeout=0.2, _max_retries=0)
    parent = queue.add_task(tasks.fan_out, str(tmp_path), 1)

    def finished(ref: Any) -> bool:
        return task_row(conn, ref.task_id)["state"] in ("completed", "failed")

    wait_for(lambda: all(map(finished, (ok, retried, failed, slow, deaf))), what="the tasks")

    def of(ref: Any) -> list[str]:
        return [e["event"] for e in events(log) if e["task_id"] == str(ref.task_id)]

    wait_for(lambda: "completed" in of(ok), what="the completed event")
    assert of(ok) == ["claimed", "started", "completed"]
    wait_for(lambda: of(retried).count("completed") == 1, what="the retried task's events")
    assert of(retried) == ["claimed", "started", "retried", "claimed", "started", "completed"]
    assert of(failed) == ["claimed", "started", "failed"]
    assert of(slow) == ["claimed", "started", "timeout", "failed"]
    assert of(deaf) == ["claimed", "started", "timeout", "worker_died", "failed"]
    seen = {e["event"] for e in events(log)}
    wait_for(lambda: {"worker_died", "worker_recycled"} <= {e["event"] for e in events(log)})
    by_event = {e["event"]: e for e in events(log)}
    assert by_event["failed"]["level"] == "WARNING" and by_event["retried"]["level"] == "INFO"
    assert by_event["completed"]["level"] == "DEBUG"
    assert seen <= set(EVENTS)
    # the children of a task are inserted by the supervisor, which logs them
    wait_for(lambda: (tmp_path / "final").exists(), what="the children")
    enqueued = [e for e in events(log) if e["event"] == "enqueued"]
    assert len(enqueued) == 2 and parent.result(timeout=5) == 1


def test_the_events_are_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Lifecycle events") :]
    for event in EVENTS:
        assert f"`{event}`" in section, event


def test_cancelling_a_running_task_logs_the_cancelled_event(queue, conn, start_server):
    from qsup import admin

    server = start_server("--workers", "1", env={"QSUP_LOG_FORMAT": "json"})
    ref = queue.add_task(tasks.sleep_then_return, 30)
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "running", what="running")
    admin.cancel_task(conn, ref.task_id, queue.config.wake_channel)

    def cancelled() -> list[str]:
        return [
            e["message"]
            for e in events(server.log_path)
            if (e["event"], e["task_id"]) == ("cancelled", str(ref.task_id))
            and e["message"].startswith("task cancelled")  # not "cancelling: stopping worker"
        ]

    wait_for(cancelled, what="the cancelled event")
    # it ran: before, the message said "task cancelled before it started"
    assert re.fullmatch(
        r"task cancelled while running: worker stopped after \d+\.\d s", cancelled()[0]
    )
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "cancelled", what="cancelled")
    logged = [r["message"] for r in admin.task_logs(conn, ref.task_id) if r["type"] == "cancelled"]
    assert logged and logged[0].startswith("cancelled by operator while running: worker stopped")


def test_cancelling_an_unstarted_task_logs_the_cancelled_event(queue, conn, start_server):
    """The cancel of a task the server holds unstarted is its to log; one not claimed yet,
    cancelled over HTTP, is logged by the server's HTTP process."""
    from qsup import admin

    env = {"QSUP_LOG_FORMAT": "json", "QSUP_ADMIN_TOKEN": "s3cret"}
    server = start_server("--workers", "1", env=env, http=True)
    running = queue.add_task(tasks.sleep_then_return, 30)
    held = queue.add_task(tasks.add, 1, 2)  # claimed ahead for the busy worker
    wait_for(lambda: task_row(conn, running.task_id)["state"] == "running", what="running")
    wait_for(lambda: task_row(conn, held.task_id)["state"] == "picked_up", what="held")
    admin.cancel_task(conn, held.task_id, queue.config.wake_channel)
    later = queue.add_task(tasks.add, 3, 4, _delay=3600)  # not due: no server holds it
    request = urllib.request.Request(
        server.url(f"/api/tasks/{later.task_id}/cancel"),
        method="POST",
        headers={"Authorization": "Bearer s3cret"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["outcome"] == "cancelled"

    def seen() -> set[tuple[str, str]]:
        return {(e["event"], e["task_id"]) for e in events(server.log_path)}

    both = {("cancelled", str(held.task_id)), ("cancelled", str(later.task_id))}
    wait_for(lambda: both <= seen(), what="both cancelled events")
    wait_for(lambda: task_row(conn, held.task_id)["state"] == "cancelled", what="written")
    admin.cancel_task(conn, running.task_id, queue.config.wake_channel)  # a quick stop
