"""``GET /api/workflows/{id}`` against a real database."""

from __future__ import annotations

import uuid

import pytest

from qsup import chain, group, step
from tests import workflow_tasks as wt
from tests.integration.test_http import make_client


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
