"""Producers' wake-ups against a real PostgreSQL: coalesced per queue after the pool's commits,
inside the caller's transaction for ``connection=`` (delivered on commit, never on rollback)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from qsup import wakeups
from qsup.supervisor.listener import Listener
from tests import tasks
from tests.conftest import one, wait_for


@pytest.fixture
def listener(queue: Any, db_url: str) -> Iterator[Listener]:
    found = Listener(db_url, queue.config.notify_channel)
    found.open()
    try:
        yield found
    finally:
        found.close()


def heard_until(listener: Listener, marker: str, timeout: float = 10.0) -> list[str]:
    """Every payload up to ``marker`` (sent last, delivered last: commits notify in order)."""
    assert listener.conn is not None
    payloads: list[str] = []
    deadline = time.monotonic() + timeout
    while marker not in payloads:
        assert time.monotonic() < deadline, f"no {marker!r} in {payloads}"
        payloads += [n.payload for n in listener.conn.notifies(timeout=0.05)]
    return payloads[: payloads.index(marker)]


@pytest.mark.timeout(30)
def test_a_transactional_enqueue_wakes_after_its_commit_only(queue, db_url, listener):
    with psycopg.connect(db_url) as own:
        queue.add_task(tasks.add, 1, 2, _queue="committed", connection=own)
        queue.add_task(tasks.add, 1, 2, _queue="first-marker")  # the pool's, committed now
        assert heard_until(listener, "first-marker") == []  # not before the commit
        own.commit()
        queue.add_task(tasks.add, 1, 2, _queue="rolled-back", connection=own)
        own.rollback()
    queue.add_task(tasks.add, 1, 2, _queue="marker")
    assert heard_until(listener, "marker") == ["committed"]


@pytest.mark.timeout(60)
def test_a_burst_sends_fewer_notifies_than_tasks(queue, listener):
    def produce() -> None:
        for i in range(100):
            queue.add_task(tasks.add, i, 1, _queue="burst")

    producers = [threading.Thread(target=produce) for _ in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    queue.add_tasks([(tasks.add, (i, 1), {"_queue": "burst"}) for i in range(50)])
    queue.add_task(tasks.add, 1, 2, _queue="marker")
    heard = heard_until(listener, "marker")
    assert set(heard) == {"burst"}
    # 401 commits within a few hundred ms: at most one wake-up per 5 ms, at least the first
    assert 1 <= len(heard) < 200


@pytest.mark.timeout(30)
def test_a_failed_wake_up_is_sent_again(queue, listener, monkeypatch):
    """The NOTIFY after the commit fails (a lost connection): the enqueue returns, and the
    thread wakes the queue."""
    real = wakeups.notify_queues
    failed: list[list[str]] = []

    def failing_once(c: psycopg.Connection[Any], channel: str, queues: Any) -> None:
        if not failed:
            failed.append(list(queues))
            raise psycopg.OperationalError("the server closed the connection")
        real(c, channel, queues)

    monkeypatch.setattr(wakeups, "notify_queues", failing_once)
    assert queue.add_task(tasks.add, 1, 2, _queue="flaky").task_id
    assert listener.conn is not None
    heard: list[str] = []
    deadline = time.monotonic() + 10
    while "flaky" not in heard and time.monotonic() < deadline:
        heard += [n.payload for n in listener.conn.notifies(timeout=0.05)]
    assert failed == [["flaky"]] and heard == ["flaky"]


def test_due_now_wakes_a_queue_once_per_window():
    assert wakeups.due_now(["a", "b"], {}, 10.0, 0.005) == (["a", "b"], None)
    assert wakeups.due_now(["a", "b"], {"a": 9.998}, 10.0, 0.005) == (["b"], pytest.approx(10.003))
    assert wakeups.due_now(["a"], {"a": 9.995}, 10.0, 0.005) == (["a"], None)


@pytest.mark.timeout(30)
def test_close_sends_what_waits_stops_the_thread_and_leaves_no_connection(
    db_url, conn, listener, monkeypatch
):
    """The waker's thread used to outlive ``close()`` and open the closed pool again for its
    next wake-up: a connection leaked per closed Queue."""
    from qsup import Queue

    sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'closing'"
    monkeypatch.setenv("PGAPPNAME", "closing")
    q = Queue(db_url)
    for _ in range(20):  # a burst: later wake-ups wait in the thread
        q.add_task(tasks.noop, _queue="closing")
    waker = q._waker
    assert waker is not None and waker._thread is not None
    q.close()
    assert not waker._thread.is_alive()
    heard_until(listener, "closing")  # woken
    # a closed session's backend leaves pg_stat_activity a moment after the client hangs up
    wait_for(lambda: one(conn, sessions) == 0, what="the pool's sessions to end")
    q.add_task(tasks.noop, _queue="closing")  # used again: wakes servers again
    q.close()
    wait_for(lambda: one(conn, sessions) == 0, what="the pool's sessions to end again")
