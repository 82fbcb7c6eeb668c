"""The pure decisions of accounting and containment: quarantine, fencing, crash causes, the
memory recycle's jitter, the rankings of ``queue stats``, the attempt's cost as logged."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from qsup.accounting import describe
from qsup.stats import rank_usage
from qsup.supervisor import policy
from qsup.supervisor.liveness import CONFIRM_AFTER, FENCE_AFTER
from qsup.supervisor.pool import crash_cause


def test_quarantine_after_max_crashes_names_every_cause():
    assert policy.quarantine([], 2) is None
    assert policy.quarantine(["SIGSEGV"], 2) is None
    assert (
        policy.quarantine(["SIGSEGV", "SIGKILL"], 2)
        == "quarantined: killed 2 workers (SIGSEGV, SIGKILL)"
    )
    assert policy.quarantine(["OOM kill"], 1) == "quarantined: killed 1 workers (OOM kill)"
    assert policy.quarantine(["SIGKILL"] * 50, 0) is None  # 0: never


def test_fencing_happens_before_any_other_server_may_declare_us_dead():
    assert FENCE_AFTER < CONFIRM_AFTER  # others confirm a free lock this much later
    assert not policy.must_fence(None, False, FENCE_AFTER)  # lock held
    assert not policy.must_fence(FENCE_AFTER - 0.1, False, FENCE_AFTER)  # a blip
    assert policy.must_fence(FENCE_AFTER, False, FENCE_AFTER)
    assert policy.must_fence(None, True, FENCE_AFTER)  # declared dead: stop at once


@pytest.mark.parametrize(
    ("code", "kill_reason", "oom", "cause"),
    [
        (-signal.SIGSEGV, None, None, "SIGSEGV"),
        (-signal.SIGKILL, None, False, "SIGKILL"),
        (-signal.SIGKILL, None, True, "OOM kill"),
        (17, None, None, "exit code 17"),
        (-signal.SIGKILL, "timeout", None, "hard timeout"),
        (-signal.SIGKILL, "memory", None, "MemoryLimitExceeded"),
        (-signal.SIGKILL, "cancel", None, None),
        (-signal.SIGKILL, "shutdown", None, None),
        (-signal.SIGKILL, "fenced", None, None),
    ],
)
def test_crash_causes(code, kill_reason, oom, cause):
    assert crash_cause(code, kill_reason, oom) == cause


def test_the_memory_recycle_has_jitter_and_the_task_count_none():
    assert policy.recycle_reason(1, 95, 0, 100, jitter=0.0) is None
    early = policy.recycle_reason(1, 95, 0, 100, jitter=0.99)  # up to 10 % before the limit
    assert early is not None and early.kind == "memory"
    assert policy.recycle_reason(1, 89, 0, 100, jitter=0.99) is None
    assert policy.recycle_reason(9, 10, 10, 0, jitter=0.99) is None  # exact, whatever jitter
    # workers' own jitters spread their recycles over the band below the limit
    points = sorted(100 * (1 - policy.RECYCLE_JITTER * j) for j in (0.1, 0.5, 0.9))
    assert points[0] < points[-1] <= 100


def test_rankings_are_largest_first_and_missing_figures_last():
    rows: list[dict[str, Any]] = [
        {"task": "a", "cpu_seconds": 1.0, "peak_memory_bytes": 5, "avg_memory_growth_bytes": 0},
        {"task": "b", "cpu_seconds": 3.0, "peak_memory_bytes": None, "avg_memory_growth_bytes": 9},
        {"task": "c", "cpu_seconds": None, "peak_memory_bytes": 7, "avg_memory_growth_bytes": -1},
    ]
    ranked = rank_usage(rows)
    assert [r["task"] for r in ranked["cpu"]] == ["b", "a", "c"]
    assert [r["task"] for r in ranked["peak_memory"]] == ["c", "a", "b"]
    assert [r["task"] for r in ranked["memory_growth"]] == ["b", "a", "c"]


def test_an_attempts_cost_as_logged():
    assert describe((None, None, None)) == ""
    assert describe((0.5123, 200 * 2**20, -(2**20))) == (
        " (CPU 0.512 s, peak 200.0 MB, growth -1.0 MB)"
    )


def test_the_http_childs_restarts_back_off():
    delays = [policy.respawn_delay(n) for n in range(8)]
    assert delays[0] == 0.0  # the first death: at once
    assert delays == sorted(delays) and delays[-1] <= 30.0
