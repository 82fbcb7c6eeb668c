"""The crew's handling of a dead worker's pipe, with a real pipe and a real cut-off message."""

from __future__ import annotations

import os
import selectors
import struct
import threading
from collections import Counter

import multiprocess

from qsup import protocol
from qsup.settings import Config
from qsup.supervisor.crew import Crew
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.pool import Worker


def test_a_message_cut_off_by_a_workers_death_does_not_block_the_loop():
    """The worker was killed in the middle of a message, and its end of the pipe is still open
    elsewhere (here: this test; in life, a process the task forked): reading what it said
    before dying must stop at the cut, not wait for the rest."""
    parent, child = multiprocess.Pipe()
    selector = selectors.DefaultSelector()
    counters: Counter[str] = Counter()
    crew = Crew(Config(), selector, threading.Lock(), counters, Ledger(counters))
    worker = Worker(slot=1, pid=2**22 + 1, process=None, conn=parent, ready=True)  # no such pid
    crew.workers[worker.pid] = worker
    selector.register(parent.fileno(), selectors.EVENT_READ, worker)
    child.send_bytes(protocol.encode(protocol.Ready(worker.pid)))
    os.write(child.fileno(), struct.pack("!i", 1000) + b"cut")  # 1,000 bytes announced, 3 sent
    heard: list[object] = []

    def last_words(w: Worker) -> None:  # what the arbiter's reader does
        try:
            while w.waiting():
                heard.append(protocol.decode(w.conn.recv_bytes()))
        except (EOFError, OSError):
            crew.close_pipe(w)

    reading = threading.Thread(target=crew._on_exit, args=(worker, -9, last_words), daemon=True)
    reading.start()
    reading.join(5)
    assert not reading.is_alive(), "reading a dead worker's last words blocked the loop"
    assert heard == [protocol.Ready(worker.pid)]
    assert worker.conn.closed and not crew.workers
    child.close()


def test_an_exit_says_why_qsup_killed_the_worker_and_guesses_oom_only_otherwise():
    from qsup.supervisor.pool import describe_exit

    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9, "timeout") == (
        "signal SIGKILL, killed by qsup: its task overran its timeout"
    )
    assert "killed by qsup: its task was cancelled" in describe_exit(-9, "cancel")
    assert describe_exit(-11) == "signal SIGSEGV"
    assert "OOM killer" in describe_exit(-9, None, oom_killed=True)
    assert "no OOM kill" in describe_exit(-9, None, oom_killed=False)
    assert "out of memory?" in describe_exit(-9, None, oom_killed=None)
    assert all("memory" not in describe_exit(-9, r) for r in ("timeout", "cancel", "shutdown"))
