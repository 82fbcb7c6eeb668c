"""The statements that take tasks back from a server (SPEC §14): the rescue of a dead server's
tasks, its late outcomes, and the give-back. A task is charged an attempt only if the database
saw it start."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from qsup import repo
from qsup.accounting import NO_USAGE
from tests.conftest import task_row

EARLIER = "ValueError: the attempt before"


def server(conn: psycopg.Connection[Any], name: str) -> int:
    return repo.register_server(conn, name, 1, "host", 1, [], take_lock=False)


def declare_dead(conn: psycopg.Connection[Any], server_id: int) -> None:
    conn.execute(
        "UPDATE queued_task_workers SET is_running = false, date_stopped = now() WHERE id = %s",
        (server_id,),
    )


def task(conn: psycopg.Connection[Any], max_retries: int, error: str | None = EARLIER) -> Any:
    return conn.execute(
        "INSERT INTO queued_tasks (id, name, max_retries, error_message)"
        " VALUES (%s, 'tests.tasks:noop', %s, %s) RETURNING id",
        (uuid.uuid4(), max_retries, error),
    ).fetchone()[0]  # type: ignore[index]


def claim(conn: psycopg.Connection[Any], server_id: int) -> list[uuid.UUID]:
    return [uuid.UUID(job.id) for job in repo.claim_batch(conn, server_id, [], 100, 60.0)]


def start(conn: psycopg.Connection[Any], server_id: int, task_id: Any) -> None:
    repo.mark_running(conn, server_id, [(task_id, datetime.now(UTC), 4242)])


def complete(conn: psycopg.Connection[Any], server_id: int, task_id: Any) -> None:
    now = time.time()
    repo.complete_batch(conn, server_id, [(task_id, json.dumps("done"), now, now, 4242, 0, 0, 0)])


def logs(conn: psycopg.Connection[Any], task_id: Any) -> list[tuple[str, str]]:
    return [(row["type"], row["message"]) for row in repo.task_logs(conn, task_id)]


def test_unstarted_tasks_go_back_unchanged_and_a_running_one_is_charged(conn):
    unstarted, running = task(conn, 0), task(conn, 1, None)
    dead = server(conn, "dead")
    assert len(claim(conn, dead)) == 2
    start(conn, dead, running)
    declare_dead(conn, dead)
    verdicts = {r.id: (r.state, r.verdict) for r in repo.rescue_orphans(conn, 2)}
    assert verdicts == {unstarted: ("enqueued", "requeue"), running: ("enqueued", "retry")}
    row = task_row(conn, unstarted)
    assert (row["state"], row["attempts"], row["error_message"]) == ("enqueued", 0, EARLIER)
    [(kind, message)] = logs(conn, unstarted)
    assert kind == "rescued"
    assert message.startswith(f"server {dead} (dead) died before the task started (declared dead")
    assert message.endswith(" UTC): requeued without using an attempt")
    row = task_row(conn, running)
    assert (row["state"], row["attempts"], row["date_started"]) == ("enqueued", 1, None)
    assert row["error_message"].startswith(
        f"ServerDied: server {dead} (dead) died while the task ran (declared dead at "
    )
    [(kind, message)] = logs(conn, running)
    assert kind == "error" and message.startswith("attempt 1/2 failed, retry now: ServerDied")
    assert repo.rescue_orphans(conn, 2) == []  # taken back once


def test_a_task_its_servers_keep_dying_under_before_its_start_is_written_is_quarantined(conn):
    """A task that kills its server within the 0.1 s before its start is written looks
    unstarted to the rescue: given back free at first, it must not loop forever."""
    poison = task(conn, 5)
    for death in (1, 2, 3):  # QUEUE_MAX_CRASHES = 2: given back twice, quarantined the third
        dead = server(conn, f"s{death}")
        assert claim(conn, dead) == [poison]
        declare_dead(conn, dead)
        [rescued] = repo.rescue_orphans(conn, 2)
        assert rescued.verdict == ("quarantine" if death == 3 else "requeue")
    row = task_row(conn, poison)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert row["error_message"].startswith(
        "quarantined: 3 servers died holding it before its start was written; the last: server"
    )
    again = task(conn, 0)
    for death in (4, 5, 6):  # QUEUE_MAX_CRASHES = 0: never quarantined
        dead = server(conn, f"s{death}")
        assert claim(conn, dead) == [again]
        declare_dead(conn, dead)
        repo.rescue_orphans(conn, 0)
    assert (task_row(conn, again)["state"], task_row(conn, again)["attempts"]) == ("enqueued", 0)


def test_a_late_outcome_of_a_rescued_server_changes_nothing(conn):
    """A server declared dead while it was only cut off writes its outcomes later: the tasks
    are no longer its own, so they are neither lost nor completed twice."""
    ran, quick = task(conn, 0, None), task(conn, 0)
    old = server(conn, "old")
    claim(conn, old)
    start(conn, old, ran)  # quick ran too, but ended before its start was written
    declare_dead(conn, old)
    repo.rescue_orphans(conn, 2)
    complete(conn, old, ran)
    complete(conn, old, quick)
    assert task_row(conn, ran)["state"] == "failed"  # charged: it had no retry left
    assert (task_row(conn, quick)["state"], task_row(conn, quick)["attempts"]) == ("enqueued", 0)
    new = server(conn, "new")
    assert claim(conn, new) == [quick]
    complete(conn, old, quick)  # still not the old server's
    assert task_row(conn, quick)["state"] == "picked_up"
    complete(conn, new, quick)
    row = task_row(conn, quick)
    assert (row["state"], row["attempts"], row["server_id"]) == ("completed", 1, new)


def test_a_rescue_skips_a_task_whose_outcome_is_being_written(conn, db_url):
    done, held = task(conn, 0), task(conn, 0)
    old = server(conn, "old")
    claim(conn, old)
    declare_dead(conn, old)
    with psycopg.connect(db_url) as writer:  # the old server's writer, mid-flush
        complete(writer, old, done)
        rescued = repo.rescue_orphans(conn, 2)
        assert [(r.id, r.verdict) for r in rescued] == [(held, "requeue")]
        writer.commit()
    assert repo.rescue_orphans(conn, 2) == []
    assert (task_row(conn, done)["state"], task_row(conn, done)["attempts"]) == ("completed", 1)
    assert (task_row(conn, held)["state"], task_row(conn, held)["attempts"]) == ("enqueued", 0)


def test_a_given_back_task_keeps_its_attempt_and_error_and_holds_no_slot(conn):
    """The drain's give-back (and the fence's, of what never started): no attempt used, the
    last error kept, and no mark of a limited queue's slot left on the queued row."""
    given_back = task(conn, 0)
    mine = server(conn, "draining")
    claim(conn, mine)
    conn.execute("UPDATE queued_tasks SET flow_slot = 1 WHERE id = %s", (given_back,))
    assert repo.release_batch(conn, mine, [given_back]) == ["default"]
    row = conn.execute(
        "SELECT state, attempts, error_message, flow_slot, server_id FROM queued_tasks"
        " WHERE id = %s",
        (given_back,),
    ).fetchone()
    assert row == ("enqueued", 0, EARLIER, None, None)
    repo.fail_batch(conn, mine, [(given_back, "late", None, None, NO_USAGE, None)])
    assert task_row(conn, given_back)["state"] == "enqueued"  # not ours any more
