"""What the supervisor writes for the task of a worker it killed because its server lost its
liveness (SPEC §14): a fence charges what ran; a server declared dead writes nothing, since the
rescue that took the tasks back decided (and it may hold a new claim of the same task)."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from qsup.protocol import Job
from qsup.settings import Config
from qsup.supervisor import settle
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.pool import Worker

PID = 4242


def job(task_id: str, attempts: int = 1) -> Job:
    return Job(task_id, "tests.tasks:noop", "[]", "{}", 60.0, attempts, 3, "{}")


class Pipe:
    def __init__(self) -> None:
        self.read, self.write = os.pipe()

    def fileno(self) -> int:
        return self.read

    def close(self) -> None:
        os.close(self.read)
        os.close(self.write)


@pytest.fixture
def killed(request: pytest.FixtureRequest) -> tuple[Ledger, Worker]:
    """A worker running ``a`` with ``b`` and ``c`` queued behind it, killed for the reason the
    test is parametrized with."""
    ledger = Ledger(Counter())
    ledger.claimed([job("a"), job("b"), job("c")])
    ledger.hand_out(PID, 3)
    ledger.start(PID, "a", 1.0)
    pipe = Pipe()
    request.addfinalizer(pipe.close)
    return ledger, Worker(1, PID, None, pipe, ready=True, kill_reason=request.param)


@pytest.mark.parametrize("killed", ["fenced"], indirect=True)
def test_a_fenced_servers_running_task_is_a_failed_attempt_and_the_rest_go_back(killed):
    ledger, worker = killed
    settle.dead_worker(ledger, worker, "signal SIGKILL", True, Config(), 2.0)
    outbox = ledger.outbox
    [(task_id, _, error, crash, _)] = outbox.retries
    assert task_id == "a" and crash is None  # no crash: not the task's fault
    assert error.startswith("ServerFenced: this server lost its liveness lock")
    [(task_id, kind, message, _)] = outbox.logs
    assert (task_id, kind) == ("a", "error") and message.startswith("attempt 1/4 failed, retry")
    assert outbox.releases == ["b", "c"]  # never started: back without using an attempt
    assert ledger.ids() == {"a", "b", "c"}  # held until written


@pytest.mark.parametrize("killed", ["rescued"], indirect=True)
def test_a_server_declared_dead_writes_nothing_for_what_it_held(killed):
    ledger, worker = killed
    settle.dead_worker(ledger, worker, "signal SIGKILL", True, Config(), 2.0)
    assert len(ledger.outbox) == 0
    assert ledger.ids() == set()
