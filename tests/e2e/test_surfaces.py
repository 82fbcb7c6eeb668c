"""Headers and concurrency keys from the HTTP API and the CLI, through a real ``qsup serve``:
the task reads the headers it was sent, and both surfaces show what is stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from qsup.api import TaskRef
from tests.integration.test_cli import as_json, run
from tests.integration.test_http import AUTH, TOKEN

pytestmark = pytest.mark.timeout(90)


def test_headers_and_key_from_http_and_cli_reach_the_task(
    queue: Any, db_url: str, start_server: Any
) -> None:
    server = start_server("--workers", "1", env={"QSUP_ADMIN_TOKEN": TOKEN}, http=True)
    sent = {"request_id": "h-1", "n": [1, 2]}
    response = httpx.post(
        server.url("/api/tasks"),
        headers=AUTH,
        timeout=5,
        json={"task": "tests.tasks:echo_headers", "headers": sent, "concurrency_key": "tenant:1"},
    )
    assert response.status_code == 201, response.text
    from_http = uuid.UUID(response.json()["id"])
    assert TaskRef(queue, from_http).result(timeout=20) == sent

    enqueued = run(
        [
            "enqueue",
            "tests.tasks:echo_headers",
            "--header",
            "request_id=c-1",
            "--header",
            "query=a=b",  # the first '=' splits
            "--concurrency-key",
            "tenant:2",
            "--json",
        ],
        db_url,
    )
    from_cli = uuid.UUID(as_json(enqueued)["id"])
    assert TaskRef(queue, from_cli).result(timeout=20) == {"request_id": "c-1", "query": "a=b"}

    shown = httpx.get(server.url(f"/api/tasks/{from_cli}"), timeout=5).json()
    assert shown["headers"] == {"request_id": "c-1", "query": "a=b"}
    assert shown["concurrency_key"] == "tenant:2"
    task = as_json(run(["task", "show", str(from_http), "--json"], db_url))
    assert task["headers"] == sent and task["concurrency_key"] == "tenant:1"
