"""The HTTP side against a real database: every route through Starlette's TestClient (a real
``qsup serve`` with HTTP is in tests/e2e/test_http_serve.py)."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx is what we install
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from qsup import series
from qsup.http.app import create_app
from qsup.settings import Config
from tests import tasks

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(db_url: str, **settings: Any) -> TestClient:
    return TestClient(create_app(Config(database_url=db_url, **settings), db_url))


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url, admin_token=TOKEN) as c:
        yield c


def add_server(
    conn: psycopg.Connection[Any],
    *,
    active: int = 1,
    idle: int = 1,
    running: bool = True,
    age: float = 0.0,
) -> None:
    conn.execute(
        "INSERT INTO queued_task_workers (server_name, max_workers, active_workers, idle_workers,"
        " is_running, last_heartbeat) VALUES ('host:1', 4, %s, %s, %s,"
        " now() - make_interval(secs => %s))",
        (active, idle, running, age),
    )


def set_state(conn: psycopg.Connection[Any], task_id: uuid.UUID, state: str, **extra: Any) -> None:
    conn.execute(
        "UPDATE queued_tasks SET state = %s, date_started = coalesce(%s, date_started),"
        " date_done = %s, error_message = %s, result = %s::jsonb WHERE id = %s",
        (
            state,
            extra.get("started"),
            extra.get("done"),
            extra.get("error"),
            extra.get("result"),
            task_id,
        ),
    )


# --- health and liveness --------------------------------------------------------------------


def test_livez(client: TestClient) -> None:
    response = client.get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_health_unhealthy_without_servers(client: TestClient, conn: Any) -> None:
    add_server(conn, running=False)
    add_server(conn, age=3600)  # running but its heartbeat is stale
    response = client.get("/health/queue")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "reason": "no_active_workers"}


def test_health_healthy_counts_workers(client: TestClient, conn: Any) -> None:
    add_server(conn, active=2, idle=1)
    add_server(conn, active=0, idle=1)
    response = client.get("/health/queue")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "workers": 4}


def test_health_degraded_with_stuck_tasks(client: TestClient, conn: Any, queue: Any) -> None:
    add_server(conn)
    ids = [queue.add_task(tasks.noop, _timeout=1).task_id for _ in range(11)]
    conn.execute(
        "UPDATE queued_tasks SET state = 'running',"
        " date_started = now() - interval '1 minute' WHERE id = ANY(%s)",
        (ids,),
    )
    body = client.get("/health/queue").json()
    assert body["status"] == "degraded" and body["reason"] == "tasks_stuck"
    conn.execute("UPDATE queued_tasks SET date_started = now() WHERE id = %s", (ids[0],))
    assert client.get("/health/queue").json()["status"] == "healthy"  # 10 is not "more than 10"


def test_health_database_down(db_url: str) -> None:
    bad_url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    with TestClient(create_app(Config(database_url=bad_url), bad_url)) as c:
        response = c.get("/health/queue")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy" and body["error"]
        assert "\n" not in body["error"], body
        metrics = c.get("/metrics").text
        assert "qsup_database_up 0.0" in metrics


# --- tasks API ------------------------------------------------------------------------------


def test_list_tasks_filters_and_paging(client: TestClient, conn: Any, queue: Any) -> None:
    ids = [
        queue.add_task(tasks.add, i, 1, _queue="q1" if i % 2 else "q2").task_id for i in range(7)
    ]
    set_state(conn, ids[0], "failed", error="boom")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/tasks", params=params).json()
        seen += [t["id"] for t in body["tasks"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in reversed(ids)]  # newest first, each exactly once
    q1 = client.get("/api/tasks", params={"queue": "q1"}).json()["tasks"]
    assert {t["queue"] for t in q1} == {"q1"} and len(q1) == 3
    failed = client.get("/api/tasks", params={"state": "failed"}).json()["tasks"]
    assert [t["id"] for t in failed] == [str(ids[0])] and failed[0]["error_message"] == "boom"
    named = client.get("/api/tasks", params={"name": "tests.tasks:add"}).json()["tasks"]
    assert len(named) == 7
    assert client.get("/api/tasks", params={"name": "nope"}).json()["tasks"] == []


def test_list_tasks_by_parent(client: TestClient, queue: Any) -> None:
    parent = queue.add_task(tasks.noop)
    child = queue.add_task(tasks.noop, _parent=parent)
    queue.add_task(tasks.noop)
    rows = client.get("/api/tasks", params={"parent": str(parent.task_id)}).json()["tasks"]
    assert [r["id"] for r in rows] == [str(child.task_id)]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "abc"},
        {"state": "exploded"},
        {"parent": "not-a-uuid"},
        {"cursor": "%%%"},
        {"cursor": "bm9wZQ"},
        {"queue": "a\x00b"},
        {"name": "x" * 300},
    ],
)
def test_list_tasks_bad_input_is_400(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/api/tasks", params=params)
    assert response.status_code == 400
    assert "error" in response.json()


def test_get_task_with_children_and_dependencies(client: TestClient, conn: Any, queue: Any) -> None:
    parent = queue.add_task(tasks.add, 1, 2)
    child = queue.add_task(tasks.add, 3, 4, _parent=parent)
    set_state(conn, parent.task_id, "completed", result="3")
    body = client.get(f"/api/tasks/{parent.task_id}").json()
    assert body["result"] == 3 and body["args"] == [1, 2] and body["state"] == "completed"
    assert [c["id"] for c in body["children"]] == [str(child.task_id)]
    child_body = client.get(f"/api/tasks/{child.task_id}").json()
    assert child_body["parent_task"] == str(parent.task_id)
    assert [d["id"] for d in child_body["dependencies"]] == [str(parent.task_id)]
    assert [d["id"] for d in body["dependents"]] == [str(child.task_id)]


def test_get_task_errors(client: TestClient) -> None:
    assert client.get("/api/tasks/nope").status_code == 400
    missing = client.get(f"/api/tasks/{uuid.uuid4()}")
    assert missing.status_code == 404 and "no task" in missing.json()["error"]
    assert client.get(f"/api/tasks/{uuid.uuid4()}/logs").status_code == 404
    assert client.get("/no/such/route").status_code == 404


def test_task_logs(client: TestClient, conn: Any, queue: Any) -> None:
    ref = queue.add_task(tasks.noop)
    for i in range(3):
        conn.execute(
            "INSERT INTO queued_task_logs (queued_task_id, type, message) VALUES (%s, 'info', %s)",
            (ref.task_id, f"line {i}"),
        )
    logs = client.get(f"/api/tasks/{ref.task_id}/logs").json()["logs"]
    assert [log["message"] for log in logs] == ["line 0", "line 1", "line 2"]
    after = client.get(
        f"/api/tasks/{ref.task_id}/logs", params={"after": logs[0]["id"], "limit": 1}
    ).json()["logs"]
    assert [log["message"] for log in after] == ["line 1"]


def test_stats_and_servers(client: TestClient, conn: Any, queue: Any) -> None:
    add_server(conn, active=1, idle=2)
    a = queue.add_task(tasks.noop, _queue="mail")
    queue.add_task(tasks.noop)
    conn.execute(
        "UPDATE queued_tasks SET state = 'completed', date_started = now(),"
        " date_done = now(), server_id = 1 WHERE id = %s",
        (a.task_id,),
    )
    series.record(conn, 1, [str(a.task_id)], [], [])  # as the server's writer does
    stats = client.get("/api/stats").json()
    assert stats["states"]["completed"] == 1 and stats["states"]["enqueued"] == 1
    assert stats["queues"] == {"mail": {"completed": 1}, "default": {"enqueued": 1}}
    assert stats["total"] == 2 and stats["workers"] == 3 and stats["estimated"] is False
    assert sum(p["n"] for p in stats["throughput"]) == 1
    servers = client.get("/api/servers").json()["servers"]
    assert len(servers) == 1 and servers[0]["idle_workers"] == 2


def test_openapi_document_lists_every_route(client: TestClient) -> None:
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/health/queue",
        "/livez",
        "/metrics",
        "/api/tasks",
        "/api/tasks/{task_id}",
        "/api/tasks/{task_id}/logs",
        "/api/stats",
        "/api/servers",
        "/api/schedules",
        "/api/tasks/{task_id}/retry",
        "/api/tasks/{task_id}/cancel",
        "/api/tasks/clear",
        "/api/schedules/{name}/run",
    ):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/api/tasks"]) == {"get", "post"}  # list and enqueue


# --- metrics --------------------------------------------------------------------------------


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_from_the_database(client: TestClient, conn: Any, queue: Any) -> None:
    add_server(conn, active=2, idle=1)
    done = queue.add_task(tasks.noop, _queue="mail")
    queue.add_task(tasks.noop, _queue="mail")
    conn.execute(
        "UPDATE queued_tasks SET state = 'completed', date_started = now() - interval"
        " '2 seconds', date_done = now(), server_id = 1 WHERE id = %s",
        (done.task_id,),
    )
    series.record(conn, 1, [str(done.task_id)], [], [])  # as the server's writer does
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/")
    found = families(response.text)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in found.values()
        for s in f.samples
    }
    assert samples[("qsup_tasks", (("queue", "mail"), ("state", "completed")))] == 1
    assert samples[("qsup_tasks", (("queue", "mail"), ("state", "enqueued")))] == 1
    assert samples[("qsup_workers_active", (("server", "host:1"),))] == 2
    assert samples[("qsup_workers_max", (("server", "host:1"),))] == 4
    assert samples[("qsup_database_up", ())] == 1
    task = (("le", "2.048"), ("task", "tests.tasks:noop"))  # 2 s: up to 2^11 ms
    assert samples[("qsup_task_duration_seconds_bucket", task)] == 1
    below = (("le", "1.024"), ("task", "tests.tasks:noop"))
    assert samples[("qsup_task_duration_seconds_bucket", below)] == 0
    assert "qsup_task_queue_wait_seconds" in found
    estimated = (("queue", "mail"), ("state", "completed"))
    assert samples[("qsup_tasks_estimated", estimated)] == 0


# --- dashboard ------------------------------------------------------------------------------


def test_dashboard_page_and_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/app.js"' in page.text and "http" not in page.text.split("<body>")[1]
    script = client.get("/static/app.js").text
    assert "textContent" in script and "innerHTML =" not in script
    assert client.get("/static/style.css").status_code == 200


def test_hostile_task_name_is_data_not_markup(client: TestClient, conn: Any, queue: Any) -> None:
    ref = queue.add_task(tasks.noop)
    conn.execute(
        "UPDATE queued_tasks SET name = '<script>alert(1)</script>' WHERE id = %s", (ref.task_id,)
    )
    body = client.get(f"/api/tasks/{ref.task_id}").json()
    assert body["name"] == "<script>alert(1)</script>"  # JSON data; the page sets textContent
    assert "<script>alert" not in client.get("/").text


# --- the user's app beside qsup's routes ----------------------------------------------------


def test_user_app_mounted_beside_qsup(db_url: str, conn: Any) -> None:
    add_server(conn)
    cfg = Config(database_url=db_url, app="tests.integration.test_http:USER_APP")
    USER_STARTED.clear()  # test_http_admin starts the same app
    with TestClient(create_app(cfg, db_url)) as c:
        assert c.get("/").text == "user root"
        assert c.get("/hello").text == "user hello"
        assert c.get("/qsup/health/queue").json()["status"] == "healthy"
        assert c.get("/qsup/api/tasks").json() == {"tasks": [], "next_cursor": None}
        assert 'src="static/app.js"' in c.get("/qsup/").text
        assert c.get("/qsup/static/app.js").status_code == 200
        assert c.get("/qsup", follow_redirects=False).headers["location"] == "/qsup/"
        assert USER_STARTED == [True]  # the user's lifespan ran


def test_the_prefix_is_configurable(db_url: str, conn: Any) -> None:
    add_server(conn)
    cfg = Config(
        database_url=db_url, app="tests.integration.test_http:USER_APP", http_prefix="/ops/queue"
    )
    with TestClient(create_app(cfg, db_url)) as c:
        assert c.get("/ops/queue/health/queue").json()["status"] == "healthy"
        assert c.get("/qsup/health/queue").text != c.get("/ops/queue/health/queue").text


def test_stats_include_durations_by_task(client: TestClient) -> None:
    body = client.get("/api/stats").json()
    assert {"durations_by_task", "failures_by_task", "completed_last_hour"} <= set(body)


def _make_user_app() -> Any:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        USER_STARTED.append(True)
        yield

    return Starlette(
        routes=[
            Route("/", lambda r: PlainTextResponse("user root")),
            Route("/hello", lambda r: PlainTextResponse("user hello")),
        ],
        lifespan=lifespan,
    )


USER_STARTED: list[bool] = []
USER_APP = _make_user_app()
