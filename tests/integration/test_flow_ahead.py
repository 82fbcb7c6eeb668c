"""The limited claim reaching ahead (qsup_claim_limited's ``aheads``), against a real
PostgreSQL: tasks taken ahead hold no slot until handed one, and the count of slots never drops
while a slot passes from an ended task to its successor in one transaction."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from qsup import flow_store, repo

Conn = psycopg.Connection[Any]


def _setup(conn: Conn, queue: str, tasks: int, limits: str) -> tuple[int, int]:
    """``tasks`` waiting tasks in ``queue`` with file limits ``limits`` (concurrency, rate,
    period, key_concurrency as SQL); two servers' ids."""
    conn.execute(
        "INSERT INTO queued_tasks (id, name, queue, concurrency_key)"
        " SELECT gen_random_uuid(), 'tests.tasks:noop', %s, 'k' || (i %% 2)"
        " FROM generate_series(1, %s) AS i",
        (queue, tasks),
    )
    conn.execute(
        "INSERT INTO queued_task_queues (queue, file_concurrency, file_rate, file_period,"
        f" file_key_concurrency) VALUES (%s, {limits})",
        (queue,),
    )
    return tuple(  # type: ignore[return-value]
        repo.register_server(conn, f"h:{n}", 4, "h", n, [], take_lock=False) for n in (1, 2)
    )


def _claim(conn: Conn, server: int, want: int, aheads: int = 0, finished: Any = ()) -> Any:
    return flow_store.claim_limited(conn, server, ["pay"], want, 60.0, list(finished), [aheads])


def _slots(conn: Conn) -> list[tuple[int, int]]:
    """(flow_slot, count) of the held tasks."""
    return conn.execute(
        "SELECT flow_slot, count(*) FROM queued_tasks"
        " WHERE state IN ('picked_up', 'running') GROUP BY flow_slot ORDER BY 1"
    ).fetchall()


@pytest.mark.timeout(30)
def test_a_full_queue_is_claimed_ahead_and_the_tasks_ahead_hold_no_slot(conn):
    one, two = _setup(conn, "pay", 20, "3, NULL, NULL, NULL")
    first = _claim(conn, one, 10)
    assert (len(first.jobs), len(first.ahead)) == (3, 6)  # two successors per slot taken
    assert first.retry_in == {"pay": -1}  # full: again when a slot frees
    assert _slots(conn) == [(1, 3), (2, 6)]
    other = _claim(conn, two, 10, aheads=4)  # full, and it holds no slot there: nothing
    assert (other.jobs, other.ahead) == ([], [])
    more = _claim(conn, one, 0, aheads=1)  # what the server asks for
    assert (more.jobs, len(more.ahead)) == ([], 1)
    most = _claim(conn, one, 0, aheads=50)  # never more than two per slot held here
    assert (most.jobs, len(most.ahead)) == ([], 6)


@pytest.mark.timeout(30)
def test_a_slot_handed_on_with_the_outcome_is_never_free_in_between(conn):
    one, two = _setup(conn, "pay", 20, "2, NULL, NULL, NULL")
    first = _claim(conn, one, 2)
    ended, successor = first.jobs[0].id, first.ahead[0].id
    with conn.transaction():  # what the writer's flush does
        flow_store.hand_on_slots(conn, one, [successor])
        now = time.time()
        repo.complete_batch(conn, one, [(ended, "null", now, now, 1, 0.0, 0, 0)])
    assert _slots(conn) == [(1, 2), (2, 3)]
    assert _claim(conn, two, 5).jobs == []  # still full
    # the other slot holder ends without a successor: its slot is free (before it is written)
    freed = _claim(conn, two, 5, finished=[first.jobs[1].id])
    assert len(freed.jobs) == 1


@pytest.mark.parametrize(
    "limits",
    ["2, 100, 60, NULL", "2, NULL, NULL, 1", "NULL, NULL, NULL, 1", "NULL, 100, 60, NULL"],
    ids=["rate", "key", "key-only", "rate-only"],
)
@pytest.mark.timeout(30)
def test_only_a_plain_concurrency_limit_is_claimed_ahead(conn, limits):
    one, _ = _setup(conn, "pay", 20, limits)
    claimed = _claim(conn, one, 2, aheads=5)
    assert claimed.jobs and claimed.ahead == []


@pytest.mark.timeout(30)
def test_a_queue_over_its_lowered_limit_is_not_claimed_ahead(conn):
    one, _ = _setup(conn, "pay", 20, "4, NULL, NULL, NULL")
    assert len(_claim(conn, one, 4).jobs) == 4
    conn.execute("UPDATE queued_task_queues SET concurrency = 2")
    lowered = _claim(conn, one, 4, aheads=4)
    assert (lowered.jobs, lowered.ahead) == ([], [])
