"""An idle server with one schedule makes a few statements a minute: cron sleeps until the next
tick instead of checking every 0.5 s (about 240 statements a minute before)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import wait_for
from tests.pgwire import StatementCounter

YEARLY = (
    '[[schedules]]\nname = "new-year"\ncron = "0 0 1 1 *"\ntask = "tests.tasks:add"\n'
    "args = [1, 2]\n"
)
WINDOW = 20.0


def quiet(counter: StatementCounter, for_seconds: float = 1.0) -> bool:
    """No statement for ``for_seconds``: start-up is over."""
    before = counter.statements()
    time.sleep(for_seconds)
    return counter.statements() == before


@pytest.mark.timeout(90)
def test_an_idle_server_with_a_schedule_makes_few_statements(conn, db_url, start_server, tmp_path):
    config = tmp_path / "queue.toml"
    config.write_text(YEARLY)
    counter = StatementCounter(db_url)
    try:
        start_server(
            "--workers", "1", "--config", str(config), env={"QUEUE_DATABASE_URL": counter.url}
        )
        wait_for(
            lambda: conn.execute("SELECT count(*) FROM queued_task_schedules").fetchone()[0] == 1,
            what="the schedule's row",
        )
        wait_for(lambda: quiet(counter), what="the end of start-up's statements")
        before = counter.statements()
        time.sleep(WINDOW)  # a rate is measured over time: nothing to wait on
        made = counter.statements() - before
    finally:
        counter.close()
    # Measured over 75 s: the liveness watch every 5 s (SPEC §13 allows one per 5 s), one heartbeat
    # every 30 s, cron's 3 once a minute, so 4 in most windows and at most 4-5 + 1 + 3; before the
    # cron fix, about 76.
    assert made <= 10, f"{made} statements in {WINDOW:g} s"
