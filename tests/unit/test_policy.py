"""The supervisor's pure decisions: tables plus properties, no mocks."""

from hypothesis import given
from hypothesis import strategies as st

from qsup.supervisor import policy
from qsup.supervisor.policy import WorkerView


def test_spawns_up_to_min_then_one_per_task_no_free_worker_can_take():
    assert policy.desired_spawns(0, 0, 0, 2, 8) == 2
    assert policy.desired_spawns(0, 0, 1, 2, 8) == 2
    assert policy.desired_spawns(2, 0, 1, 2, 8) == 1
    assert policy.desired_spawns(2, 1, 1, 2, 8) == 0
    assert policy.desired_spawns(1, 1, 500, 1, 8) == 7  # a first claim: every worker at once
    assert policy.desired_spawns(2, 0, 3, 1, 8) == 3
    assert policy.desired_spawns(8, 0, 50, 2, 8) == 0
    assert policy.desired_spawns(3, 0, 0, 2, 8) == 0


@given(
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 1000),
    st.integers(0, 10),
    st.integers(1, 20),
)
def test_spawning_never_exceeds_max(current, idle, waiting, low, high):
    low = min(low, high)
    idle = min(idle, current)
    assert current + policy.desired_spawns(current, idle, waiting, low, high) <= max(current, high)


def test_idle_workers_retire_longest_idle_first_down_to_min():
    workers = [
        WorkerView(False, 0, 0, 0),
        WorkerView(False, 50, 0, 0),
        WorkerView(True, 0, 0, 0),
        WorkerView(False, 10, 0, 0),
    ]
    assert policy.idle_to_retire(workers, now=100, idle_timeout=60, min_workers=1) == [0, 3]
    assert policy.idle_to_retire(workers, now=100, idle_timeout=60, min_workers=3) == [0]
    assert policy.idle_to_retire(workers, now=100, idle_timeout=60, min_workers=4) == []


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 100)), max_size=20), st.integers(0, 20))
def test_retiring_keeps_the_minimum(specs, low):
    workers = [WorkerView(busy, since, 0, 0) for busy, since in specs]
    retired = policy.idle_to_retire(workers, now=200, idle_timeout=30, min_workers=low)
    assert len(workers) - len(retired) >= min(low, len(workers))
    assert all(not workers[i].busy for i in retired)


def test_recycle_reasons():
    by_count = policy.recycle_reason(10, 50, 10, 0)
    assert by_count is not None and by_count.kind == "max_tasks"
    assert policy.recycle_reason(9, 50, 10, 0) is None
    by_memory = policy.recycle_reason(1, 300, 0, 200)
    assert by_memory is not None and by_memory.kind == "memory"
    assert "RSS" in by_memory.reason
    assert policy.recycle_reason(1000, 10**6, 0, 0) is None


FAST = policy.Handoff(16, 32, 16)
SLOW = policy.Handoff(1, 1, 1)
AHEAD = policy.Handoff(1, 2, 4)  # 50 ms tasks


def test_claim_sizes_fill_two_batches_per_worker_for_tiny_tasks():
    assert policy.claim_size([], 0, 0, 200, FAST) == 0
    assert policy.claim_size([0, 0], 0, 0, 200, FAST) == 96  # 2 workers x (2 + 1 held) x 16
    assert policy.claim_size([30, 30], 0, 30, 200, FAST) == 0  # full enough
    assert policy.claim_size([0, 0], 2, 0, 200, FAST) == 128  # spare workers count too
    assert policy.claim_size([0] * 100, 0, 0, 200, FAST) == 200
    assert policy.claim_size([0, 1], 0, 0, 200, SLOW) == 3  # slow: one each, plus one held
    assert policy.claim_size([1, 1], 0, 2, 200, SLOW) == 0


def test_claims_of_short_tasks_take_a_few_jobs_per_trip_not_one():
    assert policy.claim_size([0, 0], 0, 0, 200, AHEAD) == 12  # 2 x (2 held + 4 kept here)
    assert policy.claim_size([2, 2], 0, 5, 200, AHEAD) == 0  # 3 missing: wait for a worker's 4
    assert policy.claim_size([2, 2], 0, 4, 200, AHEAD) == 4
    assert policy.claim_size([2, 1], 0, 4, 200, AHEAD) == 5


def test_refill_tops_up_when_one_batch_is_left():
    assert policy.refill_size(0, 0, 2, FAST) == 0
    assert policy.refill_size(0, 100, 2, FAST) == 16
    assert policy.refill_size(16, 100, 2, FAST) == 16
    assert policy.refill_size(17, 100, 2, FAST) == 0
    assert policy.refill_size(0, 10, 2, FAST) == 5  # fair share
    assert policy.refill_size(0, 1, 3, FAST) == 1
    assert policy.refill_size(0, 5, 2, SLOW) == 1
    assert policy.refill_size(1, 5, 2, SLOW) == 0


handoffs = st.integers(1, 128).flatmap(
    lambda cap: st.sampled_from(
        [policy.Handoff(cap, cap, cap), policy.Handoff(cap, 2 * cap, min(128, 4 * cap))]
    )
)


@given(
    st.lists(st.integers(0, 300), max_size=20),
    st.integers(0, 10),
    st.integers(0, 500),
    st.integers(1, 1000),
    handoffs,
)
def test_claims_never_exceed_the_batch_limit_or_the_room(in_flight, spare, buffered, limit, how):
    size = policy.claim_size(in_flight, spare, buffered, limit, how)
    assert 0 <= size <= limit
    room = sum(max(0, how.depth - n) for n in in_flight) + (len(in_flight) + spare) * how.ahead
    assert buffered + size <= max(room, buffered)


@given(st.integers(0, 300), st.integers(0, 500), st.integers(1, 50), handoffs)
def test_refills_respect_depth_and_buffer(in_flight, buffered, consumers, how):
    n = policy.refill_size(in_flight, buffered, consumers, how)
    assert 0 <= n <= min(buffered, how.cap)
    assert in_flight + n <= max(in_flight, how.depth)


def test_handoff_follows_the_measured_duration():
    top = policy.MAX_HANDOFF
    assert policy.handoff(None) == (1, 1, 1)  # unknown: one at a time
    assert policy.handoff(0.0) == (top, 2 * top, top)
    assert policy.handoff(0.0001) == (top, 2 * top, top)
    assert policy.handoff(0.005) == (4, 8, 40)  # claims of about 0.2 s of work per worker
    assert policy.handoff(0.01) == (2, 4, 20)
    assert policy.handoff(0.05) == (1, 2, 4)  # short: one may wait behind the running one
    assert policy.handoff(0.5) == (1, 2, 1)
    assert policy.handoff(policy.SHORT_TASK) == (1, 1, 1)  # long: none waits
    assert policy.handoff(30.0) == (1, 1, 1)
    assert policy.moving_average(None, 0.5) == 0.5
    assert policy.moving_average(1.0, 0.0) == 0.9


@given(st.integers(1, 60), st.floats(0, 10), st.floats(0, 600), st.floats(0, 0.999))
def test_retry_delay_within_bounds(attempt, base, cap, jitter):
    delay = policy.retry_delay(attempt, base, cap, jitter)
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1)) + 1e-9


def test_after_failure():
    assert policy.after_failure("error", 1, 3, None, 1, 300, 0.0) == 0.5
    assert policy.after_failure("error", 4, 3, None, 1, 300, 0.0) is None
    assert policy.after_failure("fatal", 1, 3, None, 1, 300, 0.0) is None
    assert policy.after_failure("retry", 1, 3, 7.0, 1, 300, 0.0) == 7.0


def test_respawn_backoff_grows_and_caps():
    delays = [policy.respawn_delay(n) for n in range(0, 12)]
    assert delays[0] == 0
    assert delays == sorted(delays)
    assert max(delays) == 30.0


def test_beats_double_as_the_fallback_poll_with_notify():
    assert policy.beat_interval(True, 30, 30) == 30
    assert policy.beat_interval(True, 30, 5) == 5
    assert policy.beat_interval(False, 30, 5) == 30


def test_the_pruner_sleeps_until_the_oldest_finished_task_expires_within_bounds():
    assert policy.prune_pause(None, 7 * 86400) == 60  # nothing left: a statement a minute
    assert policy.prune_pause(None, 10) == 10  # a short TTL: never outlived by more
    assert policy.prune_pause(None, 0) == 1  # the least pause stands
    assert policy.prune_pause(30.0, 7 * 86400) == 30  # the oldest expires in 30 s
    assert policy.prune_pause(0.0, 60) == 1  # expiring at a steady rate: once a second
    assert policy.prune_pause(5000.0, 60) == 60


def test_only_jobs_held_behind_the_running_one_are_recalled():
    assert policy.recallable([], set()) == ()
    assert policy.recallable(["a"], set()) == ()  # a lone job is running or about to
    assert policy.recallable(["a", "b", "c"], set()) == ("b", "c")
    assert policy.recallable({"a": 1, "b": 2, "c": 3}, {"c"}) == ("b",)  # asked for already


def test_cron_sleeps_until_the_first_next_tick_of_any_schedule():
    from datetime import UTC, datetime

    from qsup.scheduler import Schedule

    now = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)
    hourly = Schedule("h", "0 * * * *", "m:f")
    every_20s = Schedule("s", "*/20 * * * * *", "m:f")
    assert policy.seconds_to_next_tick([hourly, every_20s], now, 60.0) == 10.0
    assert policy.seconds_to_next_tick([hourly], now, 60.0) == 60.0  # capped
    assert policy.seconds_to_next_tick([hourly], now, 7200.0) == 3590.0
