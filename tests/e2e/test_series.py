"""The per-minute series (migration 0014): written by real servers' writers with the outcomes
they store, summed across servers, read by /api/series, pruned with the result TTL."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest

from qsup import series
from qsup.settings import load_config
from tests import tasks
from tests.conftest import wait_for

with warnings.catch_warnings():  # starlette's TestClient warns about httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

FAST_RETRY = {"QUEUE_RETRY_BACKOFF_BASE": "0.05", "QUEUE_SHUTDOWN_TIMEOUT": "1"}


def finished_by_queue_and_minute(conn) -> dict[tuple[str, datetime], tuple[int, int]]:
    """What the task table says: (completed, failed) per queue and minute of date_done."""
    rows = conn.execute(
        "SELECT queue, date_trunc('minute', date_done), count(*) FILTER (WHERE state = "
        "'completed'), count(*) FILTER (WHERE state = 'failed') FROM queued_tasks "
        "WHERE date_done IS NOT NULL GROUP BY 1, 2"
    ).fetchall()
    return {(q, m): (c, f) for q, m, c, f in rows}


def series_by_queue_and_minute(conn) -> dict[tuple[str, datetime], tuple[int, int]]:
    rows = conn.execute(
        "SELECT queue, minute, sum(completed), sum(failed) FROM queued_task_minutes "
        "GROUP BY 1, 2 HAVING sum(completed) + sum(failed) > 0"
    ).fetchall()
    return {(q, m): (int(c), int(f)) for q, m, c, f in rows}


def unfinished(conn) -> int:
    return conn.execute("SELECT count(*) FROM queued_tasks WHERE date_done IS NULL").fetchone()[0]


@pytest.mark.timeout(90)
def test_two_servers_write_the_series_of_what_they_ran(queue, conn, start_server):
    start_server("--workers", "2", env=FAST_RETRY)
    start_server("--workers", "2", env=FAST_RETRY)
    handles = [queue.add_task(tasks.add, i, 1, _queue="alpha") for i in range(60)]
    handles += [queue.add_task(tasks.sleep_then_return, 0.01, _queue="beta") for _ in range(30)]
    handles += [queue.add_task(tasks.always_fail, _queue="beta", _max_retries=1) for _ in range(5)]
    handles += [queue.add_task(tasks.fail_until, 2, _queue="alpha") for _ in range(4)]
    wait_for(lambda: unfinished(conn) == 0, timeout=60, what="every task to finish")

    finished = finished_by_queue_and_minute(conn)
    seen: list[dict] = []

    def counted() -> bool:  # each writer adds its outcomes within a second (tally.EVERY)
        seen.append(series_by_queue_and_minute(conn))
        return seen[-1] == finished

    try:
        wait_for(counted, timeout=20, what="the series to count every finished task")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: tasks {finished}, series {seen[-1]}") from None
    retried = conn.execute(
        "SELECT queue, sum(retried) FROM queued_task_minutes GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert retried == [("alpha", 4), ("beta", 5)]  # fail_until 2: one retry each; always_fail 1
    digests = conn.execute(
        "SELECT sum(completed + failed), array_length(run_buckets, 1) FROM queued_task_minutes "
        "GROUP BY 2"
    ).fetchall()
    assert digests == [(99, series.BUCKETS)]
    runs = conn.execute(
        "SELECT (SELECT sum(b) FROM unnest(run_buckets) b), completed + failed FROM "
        "queued_task_minutes"
    ).fetchall()
    assert all(in_digest == finished for in_digest, finished in runs)
    sleeps = conn.execute(
        "SELECT run_buckets FROM queued_task_minutes WHERE name LIKE '%sleep_then_return'"
    ).fetchall()
    total = [sum(col) for col in zip(*(row[0] for row in sleeps), strict=True)]
    p50 = series.quantile(total, 0.5)
    assert p50 is not None and 0.007 <= p50 <= 0.2  # 10 ms sleeps, within a bucket or so


@pytest.mark.timeout(30)
def test_two_writers_of_the_same_minute_add_up(conn, db_url):
    """Two servers' flushes of the same minute, queue and name: one row, summed."""
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    ids = []
    for server_id, run in ((1, 0.005), (2, 3.0)):
        task_id = conn.execute(
            "INSERT INTO queued_tasks (id, name, queue, state, server_id, date_started, "
            "date_done, scheduled_at) VALUES (gen_random_uuid(), 'n', 'q', 'completed', %s, "
            "%s, %s, %s) RETURNING id::text",
            (server_id, minute, minute + timedelta(seconds=run), minute),
        ).fetchone()[0]
        series.record(conn, server_id, [task_id], [], [])
        ids.append(task_id)
    series.record(conn, 1, [ids[1]], [], [])  # not this server's task: not counted
    row = conn.execute(
        "SELECT completed, run_seconds, run_buckets FROM queued_task_minutes"
    ).fetchall()
    assert len(row) == 1
    completed, run_seconds, buckets = row[0]
    assert completed == 2 and run_seconds == pytest.approx(3.005)
    assert sum(buckets) == 2
    assert buckets[5] == 1  # 5 ms: above 2^(4/2) ms, at most 2^(5/2) ms
    assert buckets[24] == 1  # 3 s: above 2^11.5 ms (2.9 s), at most 2^12 ms


@pytest.mark.timeout(30)
def test_api_series_answers_and_rejects_bad_input(conn, db_url):
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    buckets = [0] * series.BUCKETS
    buckets[10] = 3
    for offset, queue_name in ((0, "a"), (1, "a"), (0, "b")):
        conn.execute(
            "INSERT INTO queued_task_minutes (minute, queue, name, completed, failed, "
            "run_buckets, wait_buckets, cpu_buckets) VALUES (%s, %s, 'n', 3, 1, %s, %s, %s)",
            (minute - timedelta(minutes=offset), queue_name, buckets, buckets, buckets),
        )
    from qsup.http.app import create_app

    app = create_app(load_config({"database_url": db_url}, environ={}), db_url)
    since = (minute - timedelta(minutes=5)).isoformat()
    with TestClient(app) as client:
        body = client.get("/api/series", params={"queue": "a", "since": since, "step": 3600})
        assert body.status_code == 200, body.text
        points = body.json()["series"]
        assert [(p["queue"], p["completed"], p["failed"]) for p in points] in (
            [("a", 6, 2)],  # both minutes in one hour step
            [("a", 3, 1), ("a", 3, 1)],  # unless the hour turned between them
        )
        assert points[0]["run_p50_seconds"] == pytest.approx(0.032, rel=0.2)  # bucket 10: 32 ms
        everything = client.get("/api/series", params={"since": since, "step": 60}).json()
        assert {p["queue"] for p in everything["series"]} == {"a", "b"}
        assert client.get("/api/series", params={"step": "0"}).status_code == 400
        assert client.get("/api/series", params={"since": "yesterday"}).status_code == 400
        assert client.get("/api/series", params={"since": ""}).status_code == 400
        naive = client.get("/api/series", params={"since": "2026-01-31T12:00"})
        assert naive.status_code == 400 and "zone" in naive.json()["error"]
        assert client.get("/api/series", params={"step": "x"}).status_code == 400
        spec = client.get("/api/openapi.json").json()
        assert "/api/series" in spec["paths"]


@pytest.mark.timeout(30)
def test_series_is_pruned_with_the_result_ttl(conn):
    buckets = [0] * series.BUCKETS
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for age in (0, 5, 120, 121, 122):
        conn.execute(
            "INSERT INTO queued_task_minutes (minute, queue, name, run_buckets, wait_buckets, "
            "cpu_buckets) VALUES (%s, 'q', 'n', %s, %s, %s)",
            (now - timedelta(minutes=age), buckets, buckets, buckets),
        )
    ttl = 3600.0
    assert series.prune(conn, ttl, limit=2) == 2  # bounded batches
    assert series.prune(conn, ttl, limit=2) == 1  # short: done
    assert series.prune(conn, ttl, limit=2) == 0
    left = conn.execute("SELECT count(*) FROM queued_task_minutes").fetchone()[0]
    assert left == 2
