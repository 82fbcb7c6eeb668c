"""Mutations of the HTTP API against a real database: retry, cancel, clear, schedules and the
enqueue of registered tasks; all need the admin bearer token."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import pytest

from qsup import step
from tests import tasks
from tests.integration.test_http import AUTH, TOKEN, TestClient, client, make_client, set_state

__all__ = ["client"]  # the fixture, shared with test_http.py


# --- mutations ------------------------------------------------------------------------------

MUTATIONS = [
    "/api/tasks",
    "/api/tasks/{id}/retry",
    "/api/tasks/{id}/cancel",
    "/api/tasks/clear",
    "/api/schedules/nightly/pause",
    "/api/schedules/nightly/resume",
    "/api/schedules/nightly/run",
]


@pytest.mark.parametrize("path", MUTATIONS)
def test_mutations_refused_without_configured_token(db_url: str, path: str) -> None:
    with make_client(db_url) as c:
        response = c.post(path.format(id=uuid.uuid4()), headers=AUTH)
    assert response.status_code == 403
    assert "QSUP_ADMIN_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("path", MUTATIONS)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]
)
def test_mutations_need_the_right_token(
    client: TestClient, path: str, headers: dict[str, str]
) -> None:
    response = client.post(path.format(id=uuid.uuid4()), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_mutations_reject_get(client: TestClient) -> None:
    assert client.get(f"/api/tasks/{uuid.uuid4()}/retry").status_code in (404, 405)


def test_clear_rejects_bad_body(client: TestClient) -> None:
    assert client.post("/api/tasks/clear", headers=AUTH, content=b"[1]").status_code == 400
    assert (
        client.post("/api/tasks/clear", headers=AUTH, json={"states": ["exploded"]}).status_code
        == 400
    )


def test_retry_failed_task(client: TestClient, conn: Any, queue: Any) -> None:
    ref = queue.add_task(tasks.always_fail)
    set_state(conn, ref.task_id, "failed", error="ValueError")
    response = client.post(f"/api/tasks/{ref.task_id}/retry", headers=AUTH)
    assert response.status_code == 200 and response.json()["retried"] == 1
    assert client.get(f"/api/tasks/{ref.task_id}").json()["state"] == "enqueued"
    again = client.post(f"/api/tasks/{ref.task_id}/retry", headers=AUTH)
    assert again.status_code == 409  # enqueued now: nothing to retry
    assert client.post(f"/api/tasks/{uuid.uuid4()}/retry", headers=AUTH).status_code == 404
    assert client.post("/api/tasks/nope/retry", headers=AUTH).status_code == 400


def test_cancel_task(client: TestClient, conn: Any, queue: Any) -> None:
    ref = queue.add_task(tasks.noop)
    response = client.post(f"/api/tasks/{ref.task_id}/cancel", headers=AUTH)
    assert response.status_code == 200 and response.json()["outcome"] == "cancelled"
    assert client.get(f"/api/tasks/{ref.task_id}").json()["state"] == "cancelled"
    again = client.post(f"/api/tasks/{ref.task_id}/cancel", headers=AUTH)
    assert again.status_code == 409 and "already" in again.json()["error"]
    assert client.post(f"/api/tasks/{uuid.uuid4()}/cancel", headers=AUTH).status_code == 404


def test_clear_tasks_with_filters(client: TestClient, conn: Any, queue: Any) -> None:
    keep = queue.add_task(tasks.noop, _queue="keep")
    queue.add_task(tasks.noop, _queue="drop")
    queue.add_task(tasks.noop, _queue="drop")
    response = client.post(
        "/api/tasks/clear", headers=AUTH, json={"states": ["enqueued"], "queue": "drop"}
    )
    assert response.status_code == 200 and response.json() == {"cleared": 2}
    left = client.get("/api/tasks").json()["tasks"]
    assert [t["id"] for t in left] == [str(keep.task_id)]
    running = client.post("/api/tasks/clear", headers=AUTH, json={"states": ["running"]})
    assert running.status_code == 400  # running tasks are never cleared


def schedule_client(db_url: str) -> TestClient:
    nightly = {"name": "nightly", "cron": "0 3 * * *", "task": "tests.tasks:noop"}
    return make_client(db_url, admin_token=TOKEN, schedules=(nightly,))


def test_schedules_list_pause_resume_run(db_url: str) -> None:
    with schedule_client(db_url) as c:
        listed = c.get("/api/schedules").json()["schedules"]
        assert [(s["name"], s["paused"]) for s in listed] == [("nightly", False)]
        assert c.post("/api/schedules/nightly/pause", headers=AUTH).json()["paused"] is True
        assert c.get("/api/schedules").json()["schedules"][0]["paused"] is True
        assert c.post("/api/schedules/nightly/resume", headers=AUTH).status_code == 200
        assert c.get("/api/schedules").json()["schedules"][0]["paused"] is False
        run = c.post("/api/schedules/nightly/run", headers=AUTH)
        assert run.status_code == 200
        task = c.get(f"/api/tasks/{run.json()['task_id']}").json()
        assert task["name"] == "tests.tasks:noop"
        for action in ("pause", "run"):
            missing = c.post(f"/api/schedules/ghost/{action}", headers=AUTH)
            assert missing.status_code == 404, missing.text
        assert c.post("/api/schedules/nightly/explode", headers=AUTH).status_code == 404


# --- enqueue of registered tasks ------------------------------------------------------------


def test_enqueue_registered_task(client: TestClient) -> None:
    response = client.post(
        "/api/tasks", headers=AUTH, json={"task": "tests.tasks:decorated", "args": [21]}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "tests.tasks:decorated" and created["queue"] == "special"
    task = client.get(f"/api/tasks/{created['id']}").json()
    assert task["args"] == [21] and task["kwargs"] == {} and task["max_retries"] == 0
    assert task["state"] == created["state"] == "enqueued"


def test_enqueue_with_options(client: TestClient) -> None:
    response = client.post(
        "/api/tasks",
        headers=AUTH,
        json={
            "task": "tests.tasks:decorated",
            "kwargs": {"x": 2},
            "queue": "mail",
            "priority": 7,
            "delay": 3600,
            "headers": {"request_id": "r-7", "tags": ["a", "b"]},
            "concurrency_key": "tenant:7",
        },
    )
    assert response.status_code == 201, response.text
    task = client.get(f"/api/tasks/{response.json()['id']}").json()
    assert task["queue"] == "mail" and task["priority"] == 7 and task["kwargs"] == {"x": 2}
    assert task["scheduled_at"] > task["date_enqueued"]  # due in an hour, not now
    assert task["headers"] == {"request_id": "r-7", "tags": ["a", "b"]}
    assert task["concurrency_key"] == "tenant:7"


def test_enqueue_without_headers_or_key_stores_none(client: TestClient) -> None:
    extras: list[dict[str, Any]] = [{}, {"headers": None, "concurrency_key": None}, {"headers": {}}]
    for extra in extras:
        body = {"task": "tests.tasks:decorated", "args": [1], **extra}
        response = client.post("/api/tasks", headers=AUTH, json=body)
        assert response.status_code == 201, response.text
        task = client.get(f"/api/tasks/{response.json()['id']}").json()
        assert task["headers"] is None and task["concurrency_key"] is None, extra


@pytest.mark.parametrize(
    "name", ["tests.tasks:add", "os:system", "qsup_no_such_module:f", "tests.tasks", ""]
)
def test_enqueue_refuses_unregistered_names(client: TestClient, name: str) -> None:
    response = client.post("/api/tasks", headers=AUTH, json={"task": name})
    assert response.status_code == (404 if name else 400), response.text
    assert "error" in response.json()
    assert "qsup_no_such_module" not in sys.modules  # never imported
    assert client.get("/api/tasks").json()["tasks"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"task": "tests.tasks:decorated", "args": {"x": 1}},
        {"task": "tests.tasks:decorated", "kwargs": [1]},
        {"task": "tests.tasks:decorated", "kwargs": {"_queue": "sneaky"}},
        {"task": "tests.tasks:decorated", "priority": "high"},
        {"task": "tests.tasks:decorated", "priority": True},
        {"task": "tests.tasks:decorated", "delay": -1},
        {"task": "tests.tasks:decorated", "queue": "bad queue!"},
        {"task": "tests.tasks:decorated", "queue": 5},
        {"task": "tests.tasks:decorated", "eta": "tomorrow"},
        {"task": "tests.tasks:decorated", "args": ["x" * 4_000_000]},  # over max_args_bytes
        {"args": [1]},
        [1],
    ],
)
def test_enqueue_rejects_bad_bodies(client: TestClient, body: Any) -> None:
    response = client.post("/api/tasks", headers=AUTH, json=body)
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    assert client.get("/api/tasks").json()["tasks"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"headers": ["request_id", "r"]}, "headers: expected an object"),
        ({"headers": "request_id=r"}, "headers: expected an object"),
        ({"headers": {"k": "a\x00b"}}, "the task's headers contain a NUL character"),
        ({"headers": {"k": "x" * 20_000}}, "headers take more than 16384 bytes"),
        ({"concurrency_key": 7}, "concurrency_key: expected a string"),
        ({"concurrency_key": ["a"]}, "concurrency_key: expected a string"),
        ({"concurrency_key": "k" * 256}, "at most 255 characters, without NUL"),
        ({"concurrency_key": "a\x00b"}, "at most 255 characters, without NUL"),
        ({"_headers": {}}, "unknown field(s) _headers"),
    ],
)
def test_enqueue_rejects_bad_headers_and_keys(
    client: TestClient, extra: dict[str, Any], message: str
) -> None:
    body = {"task": "tests.tasks:decorated", "args": [1], **extra}
    response = client.post("/api/tasks", headers=AUTH, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert client.get("/api/tasks").json()["tasks"] == []


def test_enqueue_refuses_a_key_postgresql_cannot_store(client: TestClient) -> None:
    """A lone surrogate passes JSON but not UTF-8: a 400, not a server error."""
    body = b'{"task": "tests.tasks:decorated", "args": [1], "concurrency_key": "a\\ud800"}'
    json_type = {**AUTH, "Content-Type": "application/json"}
    response = client.post("/api/tasks", headers=json_type, content=body)
    assert response.status_code == 400, response.text
    assert "without NUL or lone surrogates" in response.json()["error"]


# --- protect_reads --------------------------------------------------------------------------

OPEN = ("/livez", "/health/queue", "/", "/static/app.js", "/static/style.css")


def read_paths(c: TestClient, task_id: uuid.UUID) -> list[str]:
    """Every GET of the OpenAPI document but the open ones, with a real task id (a step of a
    workflow: the id of a workflow's route too)."""
    paths = c.get("/api/openapi.json", headers=AUTH).json()["paths"]
    return [
        p.replace("{task_id}", str(task_id)).replace("{workflow_id}", str(task_id))
        for p, ops in paths.items()
        if "get" in ops and p not in OPEN
    ]


def test_protect_reads_requires_the_token(db_url: str, queue: Any) -> None:
    task_id = queue.add_workflow(step(tasks.noop)).task_ids[0]  # a task, and a workflow's step
    with make_client(db_url, admin_token=TOKEN, protect_reads=True) as c:
        paths = read_paths(c, task_id)
        assert {"/metrics", "/api/tasks", "/api/stats", "/api/openapi.json"} <= set(paths)
        for path in paths:
            denied = c.get(path)
            assert denied.status_code == 401, path
            assert denied.headers["www-authenticate"] == "Bearer"
            assert c.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
            allowed = 409 if path.endswith("/stack") else 200  # the task does not run
            assert c.get(path, headers=AUTH).status_code == allowed, path
        for path in OPEN:  # liveness, health, and the page (no data) stay open
            assert c.get(path).status_code in (200, 503), path
        no_auth = c.post(f"/api/tasks/{task_id}/cancel")
        assert no_auth.status_code == 401


def test_protect_reads_without_a_token_refuses_reads(db_url: str) -> None:
    with make_client(db_url, protect_reads=True) as c:
        response = c.get("/api/tasks", headers=AUTH)
        assert response.status_code == 403 and "QSUP_ADMIN_TOKEN" in response.json()["error"]
        assert c.get("/metrics").status_code == 403
        assert c.get("/livez").status_code == 200


def test_reads_open_by_default(client: TestClient) -> None:
    for path in ("/api/tasks", "/api/stats", "/metrics", "/api/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_protect_reads_beside_the_users_app(db_url: str) -> None:
    with make_client(
        db_url, admin_token=TOKEN, protect_reads=True, app="tests.integration.test_http:USER_APP"
    ) as c:
        assert c.get("/qsup/api/tasks").status_code == 401
        assert c.get("/qsup/api/tasks", headers=AUTH).status_code == 200
        assert c.get("/qsup/livez").status_code == 200
        assert c.get("/qsup/").status_code == 200
        assert c.get("/").text == "user root"  # the user's app is not ours to protect
