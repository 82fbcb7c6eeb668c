"""The FastAPI example against a real database and a real server."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from qsup import repo
from tests.conftest import task_row, wait_for


def test_example_app_returns_a_task_id_that_completes(queue, conn, start_server):
    from examples.fastapi_app import app

    start_server("--workers", "1", "--import", "examples.tasks")
    with TestClient(app) as client:
        response = client.post("/add", params={"a": 2, "b": 5})
        assert response.status_code == 200
        task_id = uuid.UUID(response.json()["task_id"])
        many = client.post("/add-many", params={"count": 5}).json()["task_ids"]
    # committed before the response left: the rows exist as soon as we look
    assert all(repo.get_task(conn, uuid.UUID(i)) is not None for i in many)
    wait_for(lambda: task_row(conn, task_id)["state"] == "completed", what="the task")
    assert task_row(conn, task_id)["result"] == 7


def test_example_app_survives_a_restart_in_the_same_process(queue, conn):
    # each TestClient runs the app's lifespan in a new event loop; qsup_lifespan closes the
    # async pool of the first loop so its end does not wait on pool tasks, and the second loop
    # gets a pool of its own
    from examples.fastapi_app import app

    for _ in range(2):
        with TestClient(app) as client:
            ids = client.post("/add-many", params={"count": 6}).json()["task_ids"]
        assert all(repo.get_task(conn, uuid.UUID(i)) is not None for i in ids)
