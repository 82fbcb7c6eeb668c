"""The server's row (workers, maximum, totals) shows changes at once, not at the next heartbeat
(30 s by default)."""

from __future__ import annotations

import signal

from tests import tasks
from tests.conftest import wait_for

SOON = 5.0  # well under the 30 s heartbeat: only an early beat can meet it


def test_server_row_shows_changes_without_waiting_for_the_heartbeat(queue, conn, start_server):
    server = start_server("--workers", "2", "--min-workers", "1")

    def row() -> tuple[int, int, dict]:
        found = conn.execute(
            "SELECT max_workers, active_workers + idle_workers, counters"
            " FROM queued_task_workers WHERE pid = %s",
            (server.pid,),
        ).fetchone()
        return found or (0, 0, {})

    wait_for(lambda: row()[:2] == (2, 1), SOON, what="the started server's workers")
    assert queue.add_task(tasks.add, 1, 1).result(timeout=20) == 2
    wait_for(lambda: (row()[2] or {}).get("completed") == 1, SOON, what="the completed total")
    server.signal(signal.SIGTTIN)
    wait_for(lambda: row()[0] == 3, SOON, what="SIGTTIN's maximum")
    server.signal(signal.SIGTTOU)  # one at a time: the kernel merges a pending signal's repeats
    wait_for(lambda: row()[0] == 2, SOON, what="SIGTTOU's maximum")
