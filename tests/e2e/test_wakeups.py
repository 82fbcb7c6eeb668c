"""Coalesced wake-ups never leave a committed task for the fallback poll."""

from __future__ import annotations

import pytest

from tests import tasks

NO_POLL = {  # the fallback poll (and the heartbeat, which doubles as one) out of reach
    "QUEUE_FALLBACK_POLLING_INTERVAL": "300",
    "QUEUE_HEARTBEAT_INTERVAL": "300",
    "QUEUE_SERVER_TIMEOUT": "900",
}


@pytest.mark.timeout(90)
def test_tasks_enqueued_while_the_server_idles_start_without_the_fallback_poll(queue, start_server):
    start_server("--workers", "1", env=NO_POLL)
    for _ in range(3):  # a burst: the first wakes at once, the rest at the end of its window
        refs = [queue.add_task(tasks.add, i, 1) for i in range(20)]
        assert [r.result(timeout=10) for r in refs] == [i + 1 for i in range(20)]
        lone = queue.add_task(tasks.add, 2, 2)  # after the burst, alone
        assert lone.result(timeout=10) == 4
    batch = queue.add_tasks([(tasks.add, (i, 2), {}) for i in range(5)])
    assert [r.result(timeout=10) for r in batch] == [i + 2 for i in range(5)]
