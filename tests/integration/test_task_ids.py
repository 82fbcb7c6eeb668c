"""Short task ids: tasks of one millisecond told apart by their random tail, and every typed form
(full id, unique prefix, unique suffix, dashes or not) resolved the same by the CLI and HTTP."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import pytest

from qsup.task_ids import short_id
from tests import tasks
from tests.integration.test_cli import as_json, one_line, run
from tests.integration.test_http import AUTH, client

__all__ = ["client"]  # the fixture of test_http.py


def same_millisecond(queue: Any, conn: Any, count: int) -> list[uuid.UUID]:
    """``count`` tasks whose UUIDv7s share one millisecond (the 48-bit timestamp) and so their
    first 12 hex digits: only the random bits differ, as for tasks enqueued together. An hour
    ago, so that their first 8 digits differ from those of tasks enqueued now."""
    ms = time.time_ns() // 1_000_000 - 3_600_000
    ids = [
        uuid.UUID(
            int=(ms << 80)
            | (7 << 76)
            | (secrets.randbits(12) << 64)
            | (2 << 62)
            | secrets.randbits(62)
        )
        for _ in range(count)
    ]
    for new in ids:
        old = queue.add_task(tasks.noop).task_id
        conn.execute("UPDATE queued_tasks SET id = %s WHERE id = %s", (new, old))
    return ids


def test_tasks_of_one_millisecond_differ_by_their_short_ids(queue, conn, db_url):
    ids = same_millisecond(queue, conn, 3)
    assert len({str(i)[:14] for i in ids}) == 1  # the same timestamp: useless to tell apart
    assert len({short_id(i) for i in ids}) == 3
    for task_id in ids:
        shown = as_json(run(["task", "show", short_id(task_id), "--json"], db_url))
        assert shown["id"] == str(task_id)
        human = run(["task", "show", short_id(task_id)], db_url)
        assert f"id: {short_id(task_id)}\n" in human.stdout
        assert f"full id: {task_id}\n" in human.stdout
    shared = str(ids[0])[:14]
    ambiguous = run(["task", "show", shared], db_url)
    assert ambiguous.returncode == 2
    line = one_line(ambiguous)
    assert f"'{shared}' matches 3 tasks" in line
    assert all(short_id(i) in line for i in ids)  # a longer form to type


def test_real_ids_enqueued_together_have_distinct_short_ids(queue, db_url):
    ids = [queue.add_task(tasks.noop).task_id for _ in range(30)]
    assert len({short_id(i) for i in ids}) == 30
    picked = ids[17]
    assert as_json(run(["task", "show", short_id(picked), "--json"], db_url))["id"] == str(picked)


def typed_forms(task_id: uuid.UUID) -> list[str]:
    text = str(task_id)
    return [
        text,
        text.replace("-", ""),
        text.upper(),
        text[:8],  # prefix
        text[:11],  # prefix across a dash
        text.replace("-", "")[:10],
        short_id(task_id),  # the short form
        short_id(task_id)[-6:],  # its end
        text[-17:],  # suffix with a dash
        text[-17:].replace("-", ""),
    ]


def test_cli_resolves_every_typed_form(queue, conn, db_url):
    ref = queue.add_task(tasks.noop)
    for form in typed_forms(ref.task_id):
        shown = run(["task", "show", form, "--json"], db_url)
        assert as_json(shown)["id"] == str(ref.task_id), form
    cancelled = run(["task", "cancel", short_id(ref.task_id)], db_url)
    assert cancelled.stdout == f"{short_id(ref.task_id)}: cancelled\n"
    logs = as_json(run(["task", "logs", str(ref.task_id)[-5:], "--json"], db_url))
    assert [entry["type"] for entry in logs] == ["cancelled"]
    retried = run(["task", "retry", str(ref.task_id)[:13]], db_url)
    assert retried.stdout == f"{short_id(ref.task_id)}: enqueued\n"


BAD = ["zzzz", "abc", "12-3", "0" * 33, "g123456789ab", "' OR 1=1 --"]


@pytest.mark.parametrize(
    "command",
    [["task", "show"], ["task", "logs"], ["task", "cancel"], ["task", "retry"], ["queue", "retry"]],
)
def test_cli_bad_unknown_and_ambiguous_ids(queue, conn, db_url, command):
    ids = same_millisecond(queue, conn, 2)
    for text in BAD:
        result = run([*command, text], db_url)
        assert result.returncode == 2, (text, result.stderr)
        assert f"task id {text!r}: expected hex digits" in one_line(result)
    for text in ["deadbeef0000", str(uuid.uuid4())]:
        result = run([*command, text], db_url)
        assert result.returncode == 1, (text, result.stderr)
        # A full id is taken as typed: queue retry then names it as one it could not retry.
        full = len(text) == 36 and command == ["queue", "retry"]
        assert ("not retried: " if full else "no task") in one_line(result)
    ambiguous = run([*command, str(ids[0])[:13]], db_url)
    assert ambiguous.returncode == 2
    assert "matches 2 tasks" in one_line(ambiguous)


def test_http_resolves_typed_ids_like_the_cli(queue, conn, client):
    ids = same_millisecond(queue, conn, 2)
    task_id = queue.add_task(tasks.noop).task_id
    for form in typed_forms(task_id):
        response = client.get(f"/api/tasks/{form}")
        assert response.status_code == 200, (form, response.text)
        assert response.json()["id"] == str(task_id)
    logs = client.get(f"/api/tasks/{short_id(task_id)}/logs")
    assert logs.status_code == 200 and logs.json()["task_id"] == str(task_id)
    cancelled = client.post(f"/api/tasks/{short_id(task_id)}/cancel", headers=AUTH)
    assert cancelled.json() == {"id": str(task_id), "outcome": "cancelled"}
    retried = client.post(f"/api/tasks/{str(task_id)[-6:]}/retry", headers=AUTH)
    assert retried.json() == {"retried": 1, "id": str(task_id)}
    shared = str(ids[0])[:13]
    for method, path in [("GET", ""), ("GET", "/logs"), ("POST", "/cancel"), ("POST", "/retry")]:
        ambiguous = client.request(method, f"/api/tasks/{shared}{path}", headers=AUTH)
        assert ambiguous.status_code == 400 and "matches 2 tasks" in ambiguous.json()["error"]
        bad = client.request(method, f"/api/tasks/zzzz{path}", headers=AUTH)
        assert bad.status_code == 400 and "expected hex digits" in bad.json()["error"]
        unknown = client.request(method, f"/api/tasks/deadbeef0000{path}", headers=AUTH)
        assert unknown.status_code == 404, unknown.text
