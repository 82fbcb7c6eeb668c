"""``GET /api/workflows/{id}`` against a real database."""

from __future__ import annotations

import uuid

import pytest

from qsup import chain, group, step
from tests import workflow_tasks as wt
from tests.integration.test_http import AUTH, TOKEN, make_client


@pytest.mark.timeout(30)
def test_a_workflow_is_served_by_its_id_and_by_a_steps_id(db_url, queue, conn):
    wf = queue.add_workflow(chain(step(wt.echo, 1), group(step(wt.square), step(wt.square))))
    with make_client(db_url) as client:
        shown = client.get(f"/api/workflows/{wf.workflow_id}")
        assert shown.status_code == 200
        doc = shown.json()
        assert doc["id"] == str(wf.workflow_id) and doc["state"] == "running"
        assert [s["task_id"] for s in doc["steps"]] == [str(i) for i in wf.task_ids]
        assert [s["path"] for s in doc["steps"]] == ["0", "1.0", "1.1"]
        assert [s["state"] for s in doc["steps"]] == ["enqueued", "waiting", "waiting"]
        by_step = client.get(f"/api/workflows/{wf.task_ids[2]}")
        assert by_step.status_code == 200 and by_step.json()["id"] == str(wf.workflow_id)
        assert client.get(f"/api/workflows/{uuid.uuid4()}").status_code == 404
        bad = client.get("/api/workflows/nope")
        assert bad.status_code == 400 and "workflow id" in bad.json()["error"]
        paths = client.get("/api/openapi.json").json()["paths"]
        assert "get" in paths["/api/workflows/{workflow_id}"]


@pytest.mark.timeout(30)
def test_a_workflow_is_cancelled_with_the_token_once(db_url, queue, conn, tmp_path):
    d = str(tmp_path)
    wf = queue.add_workflow(
        chain(step(wt.journal, d, "a").compensate(step(wt.journal, d, "undo")), step(wt.echo))
    )
    conn.execute("UPDATE queued_tasks SET state = 'completed', date_done = now() WHERE id = %s",
                 (wf.task_ids[0],))  # fmt: skip
    with make_client(db_url, admin_token=TOKEN) as client:
        path = f"/api/workflows/{wf.task_ids[1]}/cancel"  # by a step's id
        assert client.post(path).status_code == 401
        done = client.post(path, headers=AUTH)
        assert done.status_code == 200 and done.json() == {
            "id": str(wf.workflow_id),
            "state": "cancelled",
        }
        again = client.post(path, headers=AUTH)
        assert again.status_code == 409 and "already cancelled" in again.json()["error"]
        missing = client.post(f"/api/workflows/{uuid.uuid4()}/cancel", headers=AUTH)
        assert missing.status_code == 404
        shown = client.get(f"/api/workflows/{wf.workflow_id}").json()
    assert [s["state"] for s in shown["steps"]] == ["completed", "enqueued", "cancelled"]
    assert shown["steps"][1]["compensates"] == str(wf.task_ids[0])
