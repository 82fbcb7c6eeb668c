"""Only the supervisor reaps its workers: a dead worker must not vanish unseen."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from qsup.settings import Config
from qsup.supervisor import pool

pytestmark = pytest.mark.timeout(30)


def wait_zombie(pid: int) -> None:
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed worker did not become a zombie"
        time.sleep(0.01)


def test_a_worker_that_dies_just_before_another_is_spawned_is_still_reaped_by_us():
    # multiprocess's Process.start() polls (and so reaps) every child it started; a worker
    # killed between the arbiter's reap and a spawn in the same pass was reaped there, never
    # reported, and stayed in the crew for good: its task was never settled and a drain
    # waited for it forever.
    first = pool.spawn(1, Config())
    second = None
    try:
        os.kill(first.pid, signal.SIGKILL)
        wait_zombie(first.pid)
        second = pool.spawn(2, Config())
        assert first.pid in dict(pool.reap())
    finally:
        for worker in (first, second):
            if worker is not None:
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    os.waitpid(worker.pid, 0)
                except ChildProcessError:
                    pass
