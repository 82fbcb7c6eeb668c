"""Operator operations and schedule firing against a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from qsup import admin, scheduler, series
from qsup.errors import QsupError, TaskNotFound
from qsup.settings import Config, load_config
from qsup.stats import queue_stats
from tests import tasks


def set_state(
    conn: psycopg.Connection[Any], task_id: uuid.UUID, state: str, error: str | None = None
) -> None:
    conn.execute(
        "UPDATE queued_tasks SET state = %s, error_message = %s, attempts = 4,"
        " date_done = CASE WHEN %s IN ('completed', 'failed', 'cancelled') THEN now() END"
        " WHERE id = %s",
        (state, error, state, task_id),
    )


def row(conn: psycopg.Connection[Any], task_id: uuid.UUID) -> tuple[Any, ...]:
    found = conn.execute(
        "SELECT state, attempts, error_message, cancel_requested FROM queued_tasks WHERE id = %s",
        (task_id,),
    ).fetchone()
    assert found is not None
    return tuple(found)


def log_types(conn: psycopg.Connection[Any], task_id: uuid.UUID) -> list[str]:
    return [r["type"] for r in admin.task_logs(conn, task_id)]


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_enqueued_task_cascades_to_waiting_dependents(queue, conn):
    parent = queue.add_task(tasks.add, 1, 2)
    child = queue.add_task(tasks.add, 3, 4, _parent=parent)
    grandchild = queue.add_task(tasks.add, 5, 6, _parent=child)
    assert row(conn, child.task_id)[0] == "waiting"
    assert admin.cancel_task(conn, parent.task_id) == "cancelled"
    assert row(conn, parent.task_id)[:3:2] == ("cancelled", "cancelled by operator")
    assert row(conn, child.task_id)[0] == "cancelled"
    assert row(conn, grandchild.task_id)[0] == "cancelled"
    assert log_types(conn, parent.task_id) == ["cancelled"]
    assert log_types(conn, grandchild.task_id) == ["cancelled"]


def test_cancel_running_task_requests_it(queue, conn):
    ref = queue.add_task(tasks.noop)
    set_state(conn, ref.task_id, "running")
    assert admin.cancel_task(conn, ref.task_id) == "cancelling"
    state, _, _, requested = row(conn, ref.task_id)
    assert (state, requested) == ("running", True)
    assert log_types(conn, ref.task_id) == ["cancel_requested"]


def test_cancel_finished_or_unknown_task_is_refused(queue, conn):
    ref = queue.add_task(tasks.noop)
    set_state(conn, ref.task_id, "completed")
    with pytest.raises(QsupError, match="already completed"):
        admin.cancel_task(conn, ref.task_id)
    with pytest.raises(TaskNotFound):
        admin.cancel_task(conn, uuid.uuid4())


# --- retry -------------------------------------------------------------------------------------


def test_retry_failed_task_resets_attempts_keeps_error_in_log_and_notifies(queue, conn, db_url):
    ref = queue.add_task(tasks.always_fail, _queue="mail")
    set_state(conn, ref.task_id, "failed", "ValueError: boom")
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN qsup_test_channel")
        assert admin.retry_tasks(conn, [ref.task_id], channel="qsup_test_channel") == [ref.task_id]
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == ["mail"]
    assert row(conn, ref.task_id)[:3] == ("enqueued", 0, None)
    logs = admin.task_logs(conn, ref.task_id)
    assert logs[-1]["type"] == "retry"
    assert "ValueError: boom" in logs[-1]["message"]


def test_retry_all_failed_filters_by_queue_and_skips_other_states(queue, conn):
    a = queue.add_task(tasks.noop, _queue="a")
    b = queue.add_task(tasks.noop, _queue="b")
    done = queue.add_task(tasks.noop, _queue="a")
    cancelled = queue.add_task(tasks.noop, _queue="a")
    for ref in (a, b):
        set_state(conn, ref.task_id, "failed", "x")
    set_state(conn, done.task_id, "completed")
    set_state(conn, cancelled.task_id, "cancelled", "cancelled by operator")
    assert admin.retry_tasks(conn, all_failed=True, queue="a") == [a.task_id]
    assert row(conn, a.task_id)[0] == "enqueued"
    assert row(conn, b.task_id)[0] == "failed"
    assert row(conn, cancelled.task_id)[0] == "cancelled"
    assert admin.retry_tasks(conn, [done.task_id, cancelled.task_id]) == [cancelled.task_id]
    assert row(conn, cancelled.task_id)[0] == "enqueued"
    assert row(conn, done.task_id)[0] == "completed"


def test_retry_needs_ids_or_all_failed(conn):
    with pytest.raises(QsupError):
        admin.retry_tasks(conn)


# --- clear -------------------------------------------------------------------------------------


def test_clear_never_deletes_running_tasks_and_removes_logs(queue, conn):
    refs = {
        state: queue.add_task(tasks.noop)
        for state in ("enqueued", "running", "picked_up", "failed", "completed")
    }
    for state, ref in refs.items():
        set_state(conn, ref.task_id, state)
    conn.execute(
        "INSERT INTO queued_task_logs (queued_task_id, message) VALUES (%s, 'x')",
        (refs["failed"].task_id,),
    )
    assert admin.clear_tasks(conn) == 3
    left = {r[0] for r in conn.execute("SELECT state FROM queued_tasks")}
    assert left == {"running", "picked_up"}
    assert conn.execute("SELECT count(*) FROM queued_task_logs").fetchone() == (0,)


def test_clear_filters_by_state_and_queue(queue, conn):
    a = queue.add_task(tasks.noop, _queue="a")
    b = queue.add_task(tasks.noop, _queue="b")
    f = queue.add_task(tasks.noop, _queue="a")
    set_state(conn, f.task_id, "failed")
    assert admin.clear_tasks(conn, states=["failed"], queue="b") == 0
    assert admin.clear_tasks(conn, states=["enqueued"], queue="a") == 1
    ids = {r[0] for r in conn.execute("SELECT id FROM queued_tasks")}
    assert ids == {b.task_id, f.task_id}
    assert a.task_id not in ids
    with pytest.raises(QsupError, match="running"):
        admin.clear_tasks(conn, states=["running"])


# --- stats -------------------------------------------------------------------------------------


def test_queue_stats(queue, conn):
    """From the per-minute series, as a server's writer records what it stored."""
    server = 7
    completed = []
    for seconds in (1, 2, 3, 4, 10):
        ref = queue.add_task(tasks.noop)
        conn.execute(
            "UPDATE queued_tasks SET state = 'completed', date_done = now(), server_id = %s,"
            " date_started = now() - make_interval(secs => %s) WHERE id = %s",
            (server, seconds, ref.task_id),
        )
        completed.append(str(ref.task_id))
    old = queue.add_task(tasks.noop)
    conn.execute(
        "UPDATE queued_tasks SET state = 'completed', date_done = now() - interval"
        " '30 minutes', date_started = now() - interval '31 minutes', server_id = %s"
        " WHERE id = %s",
        (server, old.task_id),
    )
    failed = queue.add_task(tasks.always_fail)
    set_state(conn, failed.task_id, "failed", "x")
    conn.execute("UPDATE queued_tasks SET server_id = %s WHERE id = %s", (server, failed.task_id))
    series.record(conn, server, [*completed, str(old.task_id)], [str(failed.task_id)], [])
    queue.add_task(tasks.noop)
    stats = queue_stats(conn)
    assert stats["completed_last_minute"] == 5
    assert stats["completed_last_hour"] == 6
    assert stats["throughput_per_minute_last_hour"] == pytest.approx(0.1)
    assert stats["failed_last_hour"] == 1
    assert stats["tasks_by_state"]["completed"] == 6
    assert stats["tasks_by_state"]["enqueued"] == 1
    assert stats["tasks_by_state"]["running"] == 0
    assert stats["estimated"] is False
    (noop,) = stats["durations_by_task"]
    assert noop["name"] == "tests.tasks:noop"
    assert noop["avg_seconds"] == pytest.approx(80 / 6, rel=1e-3)
    assert 2 <= noop["p50_seconds"] <= 5  # the digest's bucket: within ±19 %
    assert 10 <= noop["p95_seconds"] <= 66
    assert stats["failures_by_task"] == [{"name": "tests.tasks:always_fail", "failed": 1}]


# --- schedules ---------------------------------------------------------------------------------


def schedule_config(tmp_path: Path, db_url: str, extra: str = "") -> Config:
    path = tmp_path / "queue.toml"
    path.write_text(
        '[[schedules]]\nname = "tick"\ncron = "* * * * * *"\ntask = "tests.tasks:add"\n'
        'args = [1, 2]\nqueue = "cron"\n' + extra,
        encoding="utf-8",
    )
    return load_config({"database_url": db_url}, config_file=str(path), environ={})


def scheduled(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT unique_key, queue, args FROM queued_tasks ORDER BY unique_key"
    ).fetchall()


def test_fire_due_enqueues_each_tick_once(conn, tmp_path, db_url):
    cfg = schedule_config(tmp_path, db_url)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    assert (
        scheduler.fire_due(
            conn, cfg, scheduler.validate_schedules(cfg), t0 + timedelta(milliseconds=500), None
        )
        == []
    )
    assert scheduled(conn) == []
    first = scheduler.fire_due(
        conn,
        cfg,
        scheduler.validate_schedules(cfg),
        t0 + timedelta(seconds=3, milliseconds=200),
        None,
    )
    assert len(first) == 3
    assert (
        scheduler.fire_due(
            conn,
            cfg,
            scheduler.validate_schedules(cfg),
            t0 + timedelta(seconds=3, milliseconds=900),
            None,
        )
        == []
    )
    rows = scheduled(conn)
    assert [r[0] for r in rows] == [
        f"schedule:tick:{(t0 + timedelta(seconds=s)).isoformat()}" for s in (1, 2, 3)
    ]
    assert all(r[1:] == ("cron", [1, 2]) for r in rows)
    listed = admin.list_schedules(conn, cfg)
    assert listed[0]["last_fire"] == t0 + timedelta(seconds=3)
    assert listed[0]["next_fire"] == t0 + timedelta(seconds=4)


def test_two_concurrent_servers_enqueue_exactly_one_task_per_tick(conn, tmp_path, db_url):
    cfg = schedule_config(tmp_path, db_url)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    scheduler.fire_due(conn, cfg, scheduler.validate_schedules(cfg), t0, None)
    results: list[list[uuid.UUID]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def server(index: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                for step in range(1, 41):
                    barrier.wait(timeout=10)
                    now = t0 + timedelta(milliseconds=250 * step)
                    results[index] += scheduler.fire_due(
                        own, cfg, scheduler.validate_schedules(cfg), now, None
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=server, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    keys = [r[0] for r in scheduled(conn)]
    assert len(keys) == 10  # ticks 1..10 s
    assert len(set(keys)) == 10
    assert sorted(results[0] + results[1]) == sorted(
        r[0] for r in conn.execute("SELECT id FROM queued_tasks")
    )


def test_pause_stops_firing_and_resume_skips_the_paused_ticks(conn, tmp_path, db_url):
    cfg = schedule_config(tmp_path, db_url)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    scheduler.fire_due(conn, cfg, scheduler.validate_schedules(cfg), t0, None)
    tick = scheduler.find_schedule(cfg, "tick")
    admin.set_schedule_paused(conn, tick, True, t0 + timedelta(seconds=1))
    assert admin.list_schedules(conn, cfg)[0]["paused"] is True
    assert (
        scheduler.fire_due(
            conn, cfg, scheduler.validate_schedules(cfg), t0 + timedelta(seconds=5.5), None
        )
        == []
    )
    admin.set_schedule_paused(conn, tick, False, t0 + timedelta(seconds=6))
    assert (
        scheduler.fire_due(
            conn, cfg, scheduler.validate_schedules(cfg), t0 + timedelta(seconds=6.5), None
        )
        == []
    )
    fired = scheduler.fire_due(
        conn, cfg, scheduler.validate_schedules(cfg), t0 + timedelta(seconds=7.5), None
    )
    assert len(fired) == 1
    assert [r[0] for r in scheduled(conn)] == [
        f"schedule:tick:{(t0 + timedelta(seconds=7)).isoformat()}"
    ]


def test_missed_ticks_run_once_after_downtime(conn, tmp_path, db_url):
    cfg = schedule_config(tmp_path, db_url).replace(server_timeout=10.0)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    scheduler.fire_due(conn, cfg, scheduler.validate_schedules(cfg), t0, None)
    fired = scheduler.fire_due(
        conn, cfg, scheduler.validate_schedules(cfg), t0 + timedelta(hours=2, seconds=0.5), None
    )
    # ticks of the last 10 s fire; the older missed ones are not replayed one by one
    assert len(fired) == 10


def test_run_schedule_now_and_unknown_names(conn, tmp_path, db_url):
    cfg = schedule_config(tmp_path, db_url)
    admin.set_schedule_paused(conn, scheduler.find_schedule(cfg, "tick"), True)
    task_id = admin.run_schedule_now(conn, cfg, "tick", None)
    found = conn.execute(
        "SELECT name, queue, args, state FROM queued_tasks WHERE id = %s", (task_id,)
    ).fetchone()
    assert found == ("tests.tasks:add", "cron", [1, 2], "enqueued")
    assert admin.list_schedules(conn, cfg)[0]["last_fire"] is not None
    with pytest.raises(QsupError, match="no such schedule"):
        admin.run_schedule_now(conn, cfg, "nope", None)


def test_schedule_with_unimportable_task_does_not_stop_the_others(conn, tmp_path, db_url):
    extra = (
        '\n[[schedules]]\nname = "broken"\ncron = "* * * * * *"\ntask = "no_such_module_xyz:f"\n'
    )
    cfg = schedule_config(tmp_path, db_url, extra)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    scheduler.fire_due(conn, cfg, scheduler.validate_schedules(cfg), t0, None)
    fired = scheduler.fire_due(
        conn, cfg, scheduler.validate_schedules(cfg), t0 + timedelta(seconds=1.5), None
    )
    assert len(fired) == 1
    broken = [s for s in admin.list_schedules(conn, cfg) if s["name"] == "broken"][0]
    assert broken["last_fire"] is None
