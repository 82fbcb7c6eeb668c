"""A real forked worker answers a Drop while it runs a long job, and still honours a Stop."""

from __future__ import annotations

import json
import threading
import time
import uuid

import multiprocess
import pytest
from loguru import logger

from qsup import protocol
from qsup.settings import Config
from qsup.supervisor import pool
from qsup.worker.mailbox import Mailbox

pytestmark = pytest.mark.timeout(30)


def job(name: str, *args: object) -> protocol.Job:
    return protocol.Job(
        id=str(uuid.uuid4()),
        name=name,
        args=json.dumps(list(args)),
        kwargs="{}",
        timeout=30.0,
        attempts=1,
        max_retries=0,
        context="{}",
    )


def next_message(worker: pool.Worker, timeout: float, skip: tuple[type, ...] = ()) -> object:
    """The worker's next message (skipping ``skip`` types), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.conn.poll(0.05):
            message = protocol.decode(worker.conn.recv_bytes())
            if not isinstance(message, skip):
                return message
    raise AssertionError(f"no message from the worker within {timeout} s")


@pytest.fixture
def worker():
    spawned = pool.spawn(1, Config(imports=["tests.tasks"]))
    try:
        assert isinstance(next_message(spawned, 10), protocol.Ready)
        yield spawned
    finally:
        spawned.process.kill()
        spawned.process.join(5)


def test_a_job_queued_behind_a_long_one_is_given_back_at_once(worker):
    long_job = job("tests.tasks:sleep_then_return", 5.0, "long")
    queued = job("tests.tasks:noop")
    worker.conn.send_bytes(protocol.encode(protocol.Assign((long_job, queued))))
    started = next_message(worker, 10)
    assert isinstance(started, protocol.Started) and started.task_id == long_job.id
    asked = time.monotonic()
    worker.conn.send_bytes(protocol.encode(protocol.Drop((queued.id,))))
    assert next_message(worker, 3) == protocol.Released((queued.id,))
    assert time.monotonic() - asked < 1.0  # not after the 5 s job
    # The long job goes on; a Stop read while it runs ends the worker after it, not before.
    worker.conn.send_bytes(protocol.encode(protocol.Stop()))
    results = next_message(worker, 10)
    assert isinstance(results, protocol.Results)
    assert [(f.task_id, f.outcome) for f in results.finished] == [(long_job.id, "ok")]
    worker.process.join(10)
    assert worker.process.exitcode == 0


def test_a_stop_while_idle_ends_the_worker(worker):
    worker.conn.send_bytes(protocol.encode(protocol.Assign((job("tests.tasks:noop"),))))
    assert isinstance(next_message(worker, 10, skip=(protocol.Started,)), protocol.Results)
    worker.conn.send_bytes(protocol.encode(protocol.Stop()))
    worker.process.join(10)
    assert worker.process.exitcode == 0


def test_jobs_taken_by_the_reporter_thread_as_the_worker_went_idle_are_not_waited_for():
    """The reporter's thread ticks once more after the worker went idle and takes an Assign
    from the pipe: the main thread's wait must return with it, not block on the pipe."""
    supervisor_end, worker_end = multiprocess.Pipe()
    mailbox = Mailbox(worker_end, inspect=print)
    assigned = job("tests.tasks:noop")
    supervisor_end.send_bytes(protocol.encode(protocol.Assign((assigned,))))
    deadline = time.monotonic() + 5
    while not len(mailbox) and time.monotonic() < deadline:  # the reporter's last tick
        mailbox.read_waiting()
    taken: list[protocol.Job | None] = []
    waiting = threading.Thread(
        target=lambda: taken.append(mailbox.next_job(block=True)), daemon=True
    )
    waiting.start()
    waiting.join(2)
    assert not waiting.is_alive(), "the worker blocked on its pipe with a job in hand"
    assert taken == [assigned]


def test_an_unknown_message_is_logged_and_not_taken_for_jobs() -> None:
    """A message that is neither Assign, Drop nor Stop leaves the queue as it was."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING")
    reader, writer = multiprocess.Pipe(duplex=False)
    mailbox = Mailbox(reader, inspect=print)
    writer.send_bytes(protocol.encode(protocol.Ready(pid=1)))
    writer.send_bytes(protocol.encode(protocol.Assign((job("tests.tasks:add", 1, 2),))))
    queued = mailbox.next_job(block=True)
    assert queued is not None and queued.name == "tests.tasks:add"
    assert len(mailbox) == 0
    logger.remove(sink)
    assert any("unknown message from the supervisor: Ready(pid=1)" in line for line in lines)
