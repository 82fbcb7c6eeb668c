"""What every attempt costs, what killed its workers, poison tasks quarantined, the hard memory
ceiling (SPEC §13), against real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from qsup import repo
from tests import edge_tasks, tasks
from tests.conftest import task_row, wait_for

MB = 2**20


@pytest.mark.timeout(90)
@pytest.mark.parametrize("limited", [False, True], ids=["plain", "limited-queue"])
def test_a_task_killing_its_workers_is_quarantined_after_two_crashes(
    queue, conn, start_server, tmp_path, limited
):
    # A limited queue's tasks come through another claim (qsup_claim_limited): same counting.
    config = tmp_path / "qsup.toml"
    config.write_text("[limits.default]\nconcurrency = 2\n" if limited else "")
    start_server(
        "--workers", "2", "--config", str(config), env={"QUEUE_RETRY_BACKOFF_BASE": "0.05"}
    )
    poison = queue.add_task(edge_tasks.kill_own_worker, int(signal.SIGKILL), _max_retries=5)
    others = [queue.add_task(tasks.add, i, 1) for i in range(20)]
    assert [r.result(timeout=30) for r in others] == [i + 1 for i in range(20)]
    wait_for(lambda: task_row(conn, poison.task_id)["state"] == "failed", what="quarantine")
    row = task_row(conn, poison.task_id)
    assert row["error_message"] == "quarantined: killed 2 workers (SIGKILL, SIGKILL)"
    assert row["crashes"] == 2 and row["attempts"] == 2  # not the 6 its retries allowed
    logs = [entry["message"] for entry in repo.task_logs(conn, poison.task_id)]
    assert any("signal SIGKILL" in m and "quarantined" in m for m in logs), logs
    assert any(f"worker pid {row['worker_pid']} died" in m for m in logs), (row, logs)


@pytest.mark.timeout(60)
def test_a_failed_task_keeps_the_pid_of_the_worker_that_ran_it(queue, conn, start_server):
    server = start_server("--workers", "1")
    (worker,) = server.wait_workers(1)
    ref = queue.add_task(tasks.always_fail, _max_retries=0)
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "failed", what="the failure")
    # it failed before its start was written: the failure itself records the pid
    assert task_row(conn, ref.task_id)["worker_pid"] == worker.pid


@pytest.mark.timeout(90)
def test_causes_are_recorded_and_a_manual_retry_runs_it_again(queue, conn, start_server, tmp_path):
    start_server("--workers", "1", env={"QUEUE_RETRY_BACKOFF_BASE": "0.05"})
    ref = queue.add_task(edge_tasks.kill_own_worker, int(signal.SIGSEGV), _max_retries=5)
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "failed", what="quarantine")
    assert task_row(conn, ref.task_id)["crash_causes"] == "SIGSEGV, SIGSEGV"
    shown = json.loads(_qsup(conn, "task", "show", str(ref.task_id), "--json").stdout)
    assert shown["crashes"] == 2 and shown["crash_causes"] == "SIGSEGV, SIGSEGV"
    _qsup(conn, "task", "retry", str(ref.task_id))

    def quarantines() -> int:
        logs = repo.task_logs(conn, ref.task_id)
        return sum(e["type"] == "error" and "quarantined" in e["message"] for e in logs)

    wait_for(lambda: quarantines() == 2, what="the manual run to be quarantined again")
    row = task_row(conn, ref.task_id)
    assert row["state"] == "failed" and row["attempts"] == 2  # a fresh count from the retry
    assert row["crashes"] == 2 and row["crash_causes"] == "SIGSEGV, SIGSEGV"


@pytest.mark.timeout(60)
def test_cpu_and_memory_of_each_task_are_recorded(queue, conn, start_server):
    start_server("--workers", "1")
    burner = queue.add_task(edge_tasks.burn, 0.5)
    hog = queue.add_task(edge_tasks.allocate, 200)
    small = queue.add_task(tasks.add, 1, 2)
    for ref in (burner, hog, small):
        ref.result(timeout=30)
    burnt = task_row(conn, burner.task_id)
    assert 0.45 <= burnt["cpu_seconds"] <= 1.0, burnt["cpu_seconds"]
    assert task_row(conn, hog.task_id)["peak_memory_bytes"] >= 200 * MB
    after = task_row(conn, small.task_id)
    assert after["peak_memory_bytes"] < 150 * MB  # its own peak, not the one before it
    assert after["cpu_seconds"] < 0.1


@pytest.mark.timeout(60)
def test_a_worker_past_the_hard_memory_limit_is_killed_and_its_task_fails(
    queue, conn, start_server
):
    server = start_server("--workers", "1", env={"QUEUE_WORKER_MEMORY_LIMIT_MB": "150"})
    ref = queue.add_task(edge_tasks.grow_slowly, 400, 4.0, _max_retries=0)
    wait_for(lambda: task_row(conn, ref.task_id)["state"] == "failed", what="the kill")
    row = task_row(conn, ref.task_id)
    assert row["error_message"].startswith("MemoryLimitExceeded: worker used ")
    used = int(row["error_message"].split("used ")[1].split(" MB")[0])
    assert 150 < used < 260, row["error_message"]  # killed within a sample or two
    assert row["error_message"].endswith("limit 150 MB")
    assert row["crash_causes"] == "MemoryLimitExceeded"
    assert "over worker_memory_limit_mb=150" in server.output()
    assert queue.add_task(tasks.add, 2, 2).result(timeout=20) == 4  # a new worker took over


def _http_child(server) -> psutil.Process:
    found = [c for c in server.children() if "qsup: http" in " ".join(c.cmdline())]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.timeout(60)
def test_the_http_child_killed_is_restarted_and_answers_within_5_s(queue, start_server):
    server = start_server("--workers", "1", http=True)
    first = _http_child(server)
    first.kill()
    killed_at = time.monotonic()
    wait_for(server.ready, timeout=5, interval=0.05, what="/livez to answer again")
    assert time.monotonic() - killed_at < 5
    assert _http_child(server).pid != first.pid
    wait_for(lambda: "HTTP process restarted" in server.output(), what="the restart log")
    assert f"HTTP process {first.pid} died (signal SIGKILL)" in server.output()
    assert server.running()
    ref = queue.add_task(edge_tasks.burn, 0.2)
    ref.result(timeout=20)
    with urllib.request.urlopen(server.url(f"/api/tasks/{ref.task_id}"), timeout=5) as response:
        shown = json.loads(response.read())
    assert shown["cpu_seconds"] >= 0.2 and shown["peak_memory_bytes"] > 0
    assert shown["crashes"] == 0 and "memory_growth_bytes" in shown
    burn = 'task="tests.edge_tasks:burn"'

    def scraped() -> str:  # the writer adds outcomes to the series within a second
        with urllib.request.urlopen(server.url("/metrics"), timeout=5) as response:
            text = response.read().decode()
        return text if f'qsup_task_cpu_seconds_bucket{{le="+Inf",{burn}}}' in text else ""

    text = wait_for(scraped, timeout=20, interval=0.2, what="the burn in the series")
    # From the per-minute series: buckets at 2^k ms (0.2 s of CPU: above 0.128, at most 0.512).
    assert f'qsup_task_cpu_seconds_bucket{{le="0.128",{burn}}} 0.0' in text, text[-3000:]
    assert f'qsup_task_cpu_seconds_bucket{{le="0.512",{burn}}} 1.0' in text
    assert f"qsup_task_peak_memory_bytes{{{burn}}}" in text
    assert f"qsup_task_memory_growth_bytes{{{burn}}}" in text


def _qsup(conn, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUEUE_DATABASE_URL": conn.info.dsn}
    return subprocess.run(
        [sys.executable, "-m", "qsup", *args], capture_output=True, text=True, env=env, check=True
    )


@pytest.mark.timeout(60)
def test_queue_stats_ranks_a_leaking_task_first(queue, conn, start_server):
    start_server("--workers", "1")
    refs = [queue.add_task(tasks.leak, 20) for _ in range(3)]
    # 300 MB of page faults once took more CPU than a 0.3 s burn on a busy VM: 150 MB still peaks
    # far above the leaks' 60 MB, and 0.6 s of burn is 7x its faults' 0.08 s on a calm one.
    refs += [queue.add_task(edge_tasks.allocate, 150), queue.add_task(edge_tasks.burn, 0.6)]
    refs += [queue.add_task(tasks.add, i, i) for i in range(5)]
    for ref in refs:
        ref.result(timeout=30)
    counted = "SELECT coalesce(sum(completed), 0) FROM queued_task_minutes"
    wait_for(lambda: conn.execute(counted).fetchone()[0] == len(refs), what="the series")
    report = json.loads(_qsup(conn, "queue", "stats", "--json").stdout)
    growth = report["memory_growth"]
    assert growth[0]["task"] == "tests.tasks:leak", growth
    assert growth[0]["avg_memory_growth_bytes"] >= 19 * MB
    assert report["peak_memory"][0]["task"] == "tests.edge_tasks:allocate"
    assert report["cpu"][0]["task"] == "tests.edge_tasks:burn"
    human = _qsup(conn, "queue", "stats").stdout
    assert "leak suspects" in human and "tests.tasks:leak" in human
    shown = _qsup(conn, "task", "show", str(refs[3].task_id)).stdout
    assert "peak_memory_bytes: " in shown and " MB" in shown
