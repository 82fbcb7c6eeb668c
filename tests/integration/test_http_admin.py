"""Mutations of the HTTP API against a real database: retry, cancel, clear, schedules and the
enqueue of registered tasks; all need the admin bearer token."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests import tasks
from tests.integration.test_http import AUTH, TOKEN, TestClient, client, make_client, set_state

__all__ = ["client"]  # the fixture, shared with test_http.py


# --- mutations ------------------------------------------------------------------------------

MUTATIONS = ["/api/tasks/{id}/retry", "/api/tasks/{id}/cancel", "/api/tasks/clear",
             "/api/schedules/nightly/pause", "/api/schedules/nightly/resume",
             "/api/schedules/nightly/run"]


@pytest.mark.parametrize("path", MUTATIONS)
def test_mutations_refused_without_configured_token(db_url: str, path: str) -> None:
    with make_client(db_url) as c:
        response = c.post(path.format(id=uuid.uuid4()), headers=AUTH)
    assert response.status_code == 403
    assert "QSUP_ADMIN_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("path", MUTATIONS)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_mutations_need_the_right_token(client: TestClient, path: str,
                                        headers: dict[str, str]) -> None:
    response = client.post(path.format(id=uuid.uuid4()), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_mutations_reject_get(client: TestClient) -> None:
    assert client.get(f"/api/tasks/{uuid.uuid4()}/retry").status_code in (404, 405)


def test_clear_rejects_bad_body(client: TestClient) -> None:
    assert client.post("/api/tasks/clear", headers=AUTH, content=b"[1]").status_code == 400
    assert client.post("/api/tasks/clear", headers=AUTH,
                       json={"states": ["exploded"]}).status_code == 400


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
    response = client.post("/api/tasks/clear", headers=AUTH,
                           json={"states": ["enqueued"], "queue": "drop"})
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
