"""``qsup task list`` finds tasks by state, queue, name and time, newest first, a page at a time;
``qsup queue retry`` and ``qsup task cancel`` take the same filters, count, and ask first."""

from __future__ import annotations

import uuid

import pytest

from tests import tasks
from tests.integration.test_cli import as_json, one_line, run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def mix(queue, conn):
    """Ten tasks, oldest first: noop x4 (emails), always_fail x3 failed (default), one failed
    noop of an hour ago (its id says so, like a UUIDv7 enqueued then), two enqueued."""
    refs = [queue.add_task(tasks.noop, _queue="emails") for _ in range(4)]
    refs += [queue.add_task(tasks.always_fail) for _ in range(3)]
    refs += [queue.add_task(tasks.sleep_then_return, 1) for _ in range(2)]
    ids = [r.task_id for r in refs]
    conn.execute("UPDATE queued_tasks SET state = 'completed' WHERE id = ANY(%s)", (ids[:4],))
    conn.execute(
        "UPDATE queued_tasks SET state = 'failed', error_message = 'boom\nline 2'"
        " WHERE id = ANY(%s)",
        (ids[4:7],),
    )
    hour_ago = uuid.UUID(int=(uuid.UUID(str(ids[0])).int >> 80) - 3_600_000 << 80 | 1)
    conn.execute(
        "INSERT INTO queued_tasks (id, name, state, queue) VALUES"
        " (%s, 'tests.tasks:noop', 'failed', 'emails')",
        (hour_ago,),
    )
    return [str(hour_ago), *(str(i) for i in ids)]


def _ids(rows):
    return [r["id"] for r in rows]


def test_list_filters_newest_first_and_pages_on_with_the_cursor(db_url, mix):
    newest_first = mix[::-1]
    assert _ids(as_json(run(["task", "list", "--json"], db_url))) == newest_first
    failed = as_json(run(["task", "list", "--state", "failed", "--json"], db_url))
    assert _ids(failed) == [mix[7], mix[6], mix[5], mix[0]]
    assert failed[0]["error_message"] == "boom\nline 2" and failed[0]["state"] == "failed"
    both = ["task", "list", "--state", "failed,completed", "--queue", "emails", "--json"]
    assert _ids(as_json(run(both, db_url))) == [mix[4], mix[3], mix[2], mix[1], mix[0]]
    glob = ["task", "list", "--name", "tests.tasks:*_f?il", "--json"]
    assert _ids(as_json(run(glob, db_url))) == [mix[7], mix[6], mix[5]]
    assert _ids(as_json(run(["task", "list", "--since", "30m", "--json"], db_url))) == mix[:0:-1]
    assert _ids(as_json(run(["task", "list", "--until", "30m", "--json"], db_url))) == [mix[0]]
    page = run(["task", "list", "--limit", "4", "--json"], db_url)
    assert _ids(as_json(page)) == newest_first[:4]
    assert page.stderr.strip() == f"more: add --before {newest_first[3]}"
    rest = run(["task", "list", "--limit", "6", "--before", newest_first[3], "--json"], db_url)
    assert _ids(as_json(rest)) == newest_first[4:] and rest.stderr == ""  # a last page: no hint
    short = ["task", "list", "--limit", "2", "--before", newest_first[3][-12:], "--json"]
    assert _ids(as_json(run(short, db_url))) == newest_first[4:6]


def test_list_piped_is_plain_aligned_columns_with_short_ids(db_url, mix):
    result = run(["task", "list", "--state", "failed"], db_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "state", "queue", "name", "enqueued", "attempts", "error"]
    assert [line.split()[0] for line in lines[1:]] == [
        i[-12:] for i in (mix[7], mix[6], mix[5], mix[0])
    ]
    assert lines[1].rstrip().endswith("boom")  # first line of the error only
    assert not any(ch in result.stdout for ch in "┃│━─\x1b")
    assert (
        len(
            {
                line.index("state") if i == 0 else line.index(" failed") + 1
                for i, line in enumerate(lines)
            }
        )
        == 1
    )


def test_bulk_retry_counts_asks_and_needs_yes_without_a_terminal(db_url, conn, mix):
    refused = run(["queue", "retry", "--state", "failed", "--queue", "default"], db_url)
    assert refused.returncode == 2
    assert one_line(refused) == (
        "qsup: error: queue retry: retry 3 task(s) in state failed of queue default: confirm"
        " with --yes (stdin is not a terminal)"
    )
    assert conn.execute("SELECT count(*) FROM queued_tasks WHERE state = 'failed'").fetchone() == (
        4,
    )
    done = run(["queue", "retry", "--all-failed", "--queue", "default", "--yes", "--json"], db_url)
    assert as_json(done) == {"retried": 3, "not_retried": []}
    left = as_json(run(["task", "list", "--state", "failed", "--json"], db_url))
    assert _ids(left) == [mix[0]]


def test_bulk_cancel_takes_the_same_filters(db_url, conn, mix):
    refused = run(["task", "cancel", "--name", "*sleep*"], db_url)
    assert refused.returncode == 2 and "cancel 2 task(s)" in one_line(refused)
    done = run(["task", "cancel", "--name", "*sleep*", "--limit", "1", "--yes", "--json"], db_url)
    assert as_json(done) == {"cancelled": 1, "cancelling": 0, "skipped": 0}
    states = dict(conn.execute("SELECT id::text, state FROM queued_tasks").fetchall())
    assert (states[mix[9]], states[mix[8]]) == ("cancelled", "enqueued")  # the newest one
    nothing = run(["task", "cancel", "--queue", "nosuch"], db_url)  # no match: nothing to ask
    assert (
        nothing.returncode == 0 and nothing.stdout.strip() == "cancelled 0, cancelling 0, skipped 0"
    )
