"""The enqueue API against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import psycopg
import pytest

from qsup import DatabaseUnreachable, Queue, TaskDefinitionError, repo
from qsup.supervisor.listener import Listener
from tests import tasks
from tests.conftest import task_row


def test_add_task_stores_a_row_with_its_options(queue, conn):
    ref = queue.add_task(
        tasks.add, 1, b=2, _queue="mail", _priority=5, _delay=30, _max_retries=7, _timeout=9.5
    )
    assert isinstance(ref.task_id, uuid.UUID)
    row = task_row(conn, ref.task_id)
    assert row["name"] == "tests.tasks:add"
    assert (row["args"], row["kwargs"]) == ([1], {"b": 2})
    assert (row["queue"], row["priority"], row["max_retries"], row["timeout"]) == (
        "mail",
        5,
        7,
        9.5,
    )
    assert row["state"] == "enqueued"
    assert 29 < (row["scheduled_at"] - row["date_enqueued"]).total_seconds() < 31


def test_task_decorator_defaults_apply(queue, conn):
    ref = queue.add_task(tasks.decorated, 3)
    row = task_row(conn, ref.task_id)
    assert (row["queue"], row["max_retries"], row["timeout"]) == ("special", 0, 5.0)
    assert tasks.decorated(4) == 8  # still callable as a plain function


def test_batch_enqueue_of_1000(queue, conn):
    refs = queue.add_tasks([(tasks.add, (i, i), {}) for i in range(1000)])
    assert len({r.task_id for r in refs}) == 1000
    assert (
        conn.execute("SELECT count(*) FROM queued_tasks WHERE state = 'enqueued'").fetchone()[0]
        == 1000
    )
    args = conn.execute(
        "SELECT args FROM queued_tasks WHERE id = %s", (refs[7].task_id,)
    ).fetchone()[0]
    assert args == [7, 7]


def test_batch_with_a_bad_call_inserts_nothing_and_mixes_kinds_in_order(queue, conn, db_url):
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]
    calls = [(tasks.add, (i, i), {}) for i in range(3000)]
    with pytest.raises(TaskDefinitionError, match="lambdas"):
        queue.add_tasks([*calls, (lambda: None, (), {}), *calls])  # refused mid-stream
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == 0
    with psycopg.connect(db_url) as own:  # the caller's transaction is untouched by a refusal
        with pytest.raises(TaskDefinitionError):
            queue.add_tasks([(tasks.add, (1, 1), {}), (tasks.add, (object(),), {})], connection=own)
        assert own.execute("SELECT 1").fetchone() == (1,)
    mixed = [
        (tasks.add, (1, 1), {}),
        (tasks.add, (2, 2), {"_unique_key": "k"}),
        (tasks.add, (3, 3), {"_delay": 60}),
        (tasks.add, (4, 4), {}),
    ]
    refs = queue.add_tasks(mixed)
    assert [task_row(conn, r.task_id)["args"][0] for r in refs] == [1, 2, 3, 4]
    assert [r.initial_state for r in refs] == ["enqueued"] * 4


def test_transactional_enqueue_follows_the_callers_transaction(queue, db_url, conn):
    with psycopg.connect(db_url) as own:
        ref = queue.add_task(tasks.add, 1, 2, connection=own)
        assert repo.get_task(conn, ref.task_id) is None  # not visible before commit
        own.rollback()
    assert repo.get_task(conn, ref.task_id) is None
    with psycopg.connect(db_url) as own:
        ref = queue.add_task(tasks.add, 1, 2, connection=own)
        own.commit()
    assert task_row(conn, ref.task_id)["state"] == "enqueued"


def test_notify_is_sent_on_commit_with_the_queue_name_only(queue, db_url):
    listener = Listener(db_url, queue.config.notify_channel)
    listener.open()
    assert listener.conn is not None
    try:
        queue.add_task(tasks.add, 1, 2, _queue="mail")
        payloads = []
        for _ in range(100):
            payloads += listener.drain()
            if payloads:
                break
            listener.conn.execute("SELECT 1")
        assert payloads == ["mail"]
    finally:
        listener.close()


def _renamed():
    """A module-level function whose recorded name no longer resolves."""

    def hidden():
        return 1

    hidden.__qualname__ = "no_such_function"
    return hidden


def _closure():
    def inner():
        return 1

    return inner


@pytest.mark.parametrize(
    "fn, args, kwargs, message",
    [
        (lambda: 1, (), {}, "lambda"),
        (_closure(), (), {}, "inside a function"),
        (_renamed(), (), {}, "cannot be imported"),
        (tasks.add, (object(), 1), {}, "not JSON-serialisable"),
        (tasks.add, (float("nan"), 1), {}, "not JSON-serialisable"),
        (tasks.add, (1, 2), {"_delay": -1}, "_delay"),
        (tasks.add, (1, 2), {"_queue": "bad queue!"}, "queue name"),
        (tasks.add, (1, 2), {"_dealy": 1}, "unknown task option"),
        (tasks.add, (1, 2), {"_priority": 2**40}, "_priority"),
        (tasks.add, (1, 2), {"_max_retries": -1}, "_max_retries"),
        (tasks.add, ("x" * 2_000_000, 1), {}, "QUEUE_MAX_ARGS_BYTES"),
        (tasks.add, (1, 2), {"_unique_key": "a\x00b"}, "_unique_key must be at most 500"),
        (tasks.add, (1, 2), {"_unique_key": "a\ud800"}, "without NUL or lone surrogates"),
        (tasks.add, (1, 2), {"_unique_key": "k" * 501}, "_unique_key must be at most 500"),
        (tasks.add, (1, 2), {"_unique_key": 7}, "_unique_key must be a string"),
    ],
)
def test_bad_enqueues_are_refused_with_a_clear_error(queue, conn, fn, args, kwargs, message):
    with pytest.raises(TaskDefinitionError, match=message):
        queue.add_task(fn, *args, **kwargs)
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == 0


def test_async_connection_enqueue_follows_its_transaction_and_shares_the_sync_rules(
    queue, db_url, conn
):
    async def scenario() -> tuple[uuid.UUID, uuid.UUID]:
        async with await psycopg.AsyncConnection.connect(db_url) as own:
            dropped = await queue.add_task_async(tasks.add, 1, 2, connection=own)
            assert repo.get_task(conn, dropped.task_id) is None  # not visible before commit
            await own.rollback()
            kept = await queue.add_task_async(tasks.add, 1, 2, connection=own, _unique_key="k")
            again = await queue.add_task_async(tasks.add, 3, 4, connection=own, _unique_key="k")
            assert again.task_id == kept.task_id  # the unfinished holder of the key
            await own.commit()
            with pytest.raises(TaskDefinitionError, match="does not exist"):
                await queue.add_task_async(
                    tasks.add, 5, 6, connection=own, _depends_on=[uuid.uuid4()]
                )
            await own.rollback()
            conn.execute("SELECT pg_terminate_backend(%s)", [own.info.backend_pid])
            with pytest.raises(DatabaseUnreachable, match="lost PostgreSQL"):
                await queue.add_task_async(tasks.add, 7, 8, connection=own)
        return dropped.task_id, kept.task_id

    dropped, kept = asyncio.run(scenario())
    assert repo.get_task(conn, dropped) is None
    assert task_row(conn, kept)["args"] == [1, 2]
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == 1


def test_dependency_on_a_missing_task_is_refused(queue, conn):
    with pytest.raises(TaskDefinitionError, match="does not exist"):
        queue.add_task(tasks.add, 1, 2, _depends_on=[uuid.uuid4()])
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == 0


def test_unique_key_is_race_free_under_concurrent_enqueues(db_url, conn):
    ids: list[uuid.UUID] = []
    barrier = threading.Barrier(10)

    def enqueue() -> None:
        q = Queue(db_url)
        try:
            barrier.wait()
            for _ in range(10):
                ids.append(q.add_task(tasks.add, 1, 2, _unique_key="welcome:a@b.c").task_id)
        finally:
            q.close()

    threads = [threading.Thread(target=enqueue) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 100 and len(set(ids)) == 1
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == 1


def test_async_add_task_returns_at_once_and_commits(queue, conn):
    async def scenario() -> uuid.UUID:
        ref = queue.add_task(tasks.async_add, 1, 2)
        known = ref.task_id
        assert await ref.get_task_id() == known
        other = await queue.add_task_async(tasks.add, 5, 6)
        await queue.aclose()
        return other.task_id

    other = asyncio.run(scenario())
    assert conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0] == 2
    assert task_row(conn, other)["args"] == [5, 6]


def test_one_queue_serves_one_event_loop_after_another(queue, conn):
    # asyncio.run per script step, a loop per pytest-asyncio test...: the pool of a finished loop
    # is dead (its tasks never run again) and must not be reused by the next loop
    async def enqueue(count: int) -> list[uuid.UUID]:
        adding = (queue.add_task_async(tasks.add, i, i) for i in range(count))
        refs = await asyncio.wait_for(asyncio.gather(*adding), timeout=10)
        return [ref.task_id for ref in refs]

    for _ in range(3):  # concurrent inserts make the pool grow while the loop ends
        ids = asyncio.run(enqueue(6))
        assert len({task_row(conn, i)["id"] for i in ids}) == 6


def test_result_times_out_then_raises_on_failure(queue, conn):
    ref = queue.add_task(tasks.add, 1, 2)
    with pytest.raises(TimeoutError):
        ref.result(timeout=0.1)
    conn.execute(
        "UPDATE queued_tasks SET state = 'failed', error_message = 'boom' WHERE id = %s",
        (ref.task_id,),
    )
    with pytest.raises(Exception, match="boom"):
        ref.result(timeout=1)
    done = queue.add_task(tasks.add, 1, 2)
    conn.execute(
        "UPDATE queued_tasks SET state = 'completed', result = %s WHERE id = %s",
        (json.dumps({"x": 1}), done.task_id),
    )
    assert done.result(timeout=1) == {"x": 1}


def test_nul_characters_are_refused_at_enqueue(queue):
    with pytest.raises(TaskDefinitionError, match="NUL"):
        queue.add_task(tasks.add, "a\x00", "b")
