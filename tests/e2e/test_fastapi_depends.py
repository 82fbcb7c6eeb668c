"""``QueuedTasks`` as users write it, in a FastAPI app served by a real ``qsup serve --app``:
the response must not leave before the task's row is committed. A test transaction holds a
SHARE lock on ``queued_tasks`` so the insert cannot commit; a response that arrives anyway came
before the commit (as it did with the default ``"request"`` dependency scope)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from qsup import repo
from qsup.fastapi import QueuedTasks, QueuedTasksDep
from qsup.workflow_ref import WorkflowRef
from tests.conftest import task_row
from tests.servers import ROOT, free_port, wait_for

# How long a response held back by the lock is given to (wrongly) arrive.
HELD_BACK = 1.5


@pytest.fixture
def app_server(db_url: str, tmp_path: Path) -> Iterator[str]:
    """``qsup serve --app tests.fastapi_app:app`` on a free port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "QUEUE_DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"}
    env.pop("QSUP_CONFIG", None)
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "qsup", "serve", "--workers", "1", "--import", "tests.tasks"]
        + ["--app", "tests.fastapi_app:app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"{base}/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, what="qsup serve --app to answer")
        yield base
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def _insert_waiting(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'queued_tasks'::regclass AND NOT granted"
    ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("path", ["/depends", "/annotated", "/legacy"])
def test_response_waits_for_the_commit(app_server, db_url, conn, path):
    answers: list[httpx.Response] = []
    with psycopg.connect(db_url) as locker:  # a transaction that blocks every insert
        locker.execute("LOCK TABLE queued_tasks IN SHARE MODE")
        request = threading.Thread(
            target=lambda: answers.append(httpx.post(app_server + path, timeout=30))
        )
        request.start()
        wait_for(lambda: _insert_waiting(conn), what="the insert to wait on the lock")
        request.join(HELD_BACK)
        assert not answers, f"{path} answered before its task was committed"
        locker.rollback()
    request.join(30)
    assert answers[0].status_code == 200, answers[0].text
    task_id = uuid.UUID(answers[0].json()["task_id"])
    assert repo.get_task(conn, task_id) is not None  # committed when the response arrived


def test_a_workflow_added_through_queued_tasks_is_committed_and_runs(app_server, conn, queue):
    response = httpx.post(app_server + "/workflow", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    first, last = (uuid.UUID(i) for i in body["task_ids"])
    assert repo.get_task(conn, first) is not None  # committed when the response arrived
    ref = WorkflowRef(queue, body["workflow_id"], body["task_ids"], None)  # read back by id
    assert ref.result(timeout=20) == 13  # add(add(1, 2), 10)
    assert task_row(conn, last)["state"] == "completed"


def test_an_endpoint_that_raises_still_enqueues_what_it_added(app_server, conn):
    response = httpx.post(app_server + "/raises", timeout=30)
    assert response.status_code == 500
    wait_for(
        lambda: conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == 1,
        what="the task added before the exception",
    )


def test_both_forms_under_testclient_and_the_queue_can_be_overridden(queue, conn):
    from qsup.api import default_queue

    app = FastAPI()

    @app.post("/depends")
    async def depends(tasks: QueuedTasks = Depends(QueuedTasks)) -> dict:
        return {"id": str(await tasks.add_task(_noop).get_task_id()), "q": id(tasks.queue)}

    @app.post("/annotated")
    async def annotated(tasks: QueuedTasksDep) -> dict:
        return {"id": str(tasks.add_task(_noop).task_id), "q": id(tasks.queue)}

    app.dependency_overrides[default_queue] = lambda: queue
    assert "parameters" not in app.openapi()["paths"]["/depends"]["post"]  # nothing leaks
    with TestClient(app) as client:
        for path in ("/depends", "/annotated"):
            body = client.post(path).json()
            assert body["q"] == id(queue)
            assert repo.get_task(conn, uuid.UUID(body["id"])) is not None


def _noop() -> None:
    pass
