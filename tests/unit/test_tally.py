"""The writer's tally: outcomes go to the series at most every tally.EVERY seconds."""

from __future__ import annotations

from qsup.supervisor import tally
from qsup.supervisor.outbox import Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def execute(self, sql, params):  # what series.record runs
        if self.fail:
            raise RuntimeError("database away")
        self.calls.append((params["completed"], params["failed"], params["retried"]))


def outbox() -> Outbox:
    box = Outbox()
    box.completed.append(("a", "null", 1.0, 2.0, 9, 0.1, 1, 0))
    box.retries.append(("b", 1.0, "e", None, (None, None, None)))
    return box


def test_nothing_pending_waits_forever_and_writes_nothing():
    t = tally.Tally(Clock())
    assert t.wait() is None and not t.due()


def test_outcomes_wait_for_the_interval_then_go_in_one_statement():
    clock = Clock()
    t = tally.Tally(clock)
    t.add(tally.Tally.outcomes(outbox()))
    t.add(tally.Tally.outcomes(outbox()))
    assert t.wait() == tally.EVERY and not t.due()
    clock.now += tally.EVERY
    assert t.due() and t.wait() == 0
    conn = Recorder()
    tally.record(conn, 7, t.take())
    assert conn.calls == [(["a", "a"], [], ["b", "b"])]
    assert not t.pending() and t.wait() is None


def test_taken_outcomes_are_no_longer_due_and_a_refused_write_never_raises():
    clock = Clock()
    t = tally.Tally(clock)
    t.add(tally.Tally.outcomes(outbox()))
    clock.now += tally.EVERY
    batch = t.take()  # taken even if the database is away: the writer never spins on them
    assert not t.pending() and not t.due()
    tally.record(Recorder(fail=True), 7, batch)  # logged, dropped
