"""Task counts by queue and state that stay cheap at millions of rows.

Each (state, queue) pair is counted exactly up to :data:`EXACT_UP_TO` tasks (in the state
index, which holds the queue: an index-only scan of at most that many entries per pair,
whatever the table holds); a pair with more is estimated from the planner's statistics and
marked, as Oban and River do for their dashboards. Counting 5,000,000 finished rows exactly
takes seconds; nobody needs the last digit of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from qsup.sql import queries
from qsup.states import STATES

Conn = psycopg.Connection[Any]
EXACT_UP_TO = 10_000  # tasks counted per state and queue: about 2 ms of index entries


@dataclass(frozen=True)
class Count:
    queue: str
    state: str
    n: int
    estimated: bool


def task_counts(conn: Conn, cap: int | None = None) -> list[Count]:
    """Counts per queue and state, ordered by queue then state: exact up to ``cap`` (default
    :data:`EXACT_UP_TO`) per pair, estimated beyond (``estimated``)."""
    limit = EXACT_UP_TO if cap is None else cap
    rows = conn.execute(queries()["task_counts"], {"cap": limit}).fetchall()
    return [Count(queue, state, int(n), bool(estimated)) for queue, state, n, estimated in rows]


def by_state(counts: list[Count]) -> tuple[dict[str, int], list[str]]:
    """Totals per state (every state, zero included) and the states that are estimated."""
    totals = dict.fromkeys(STATES, 0)
    estimated: list[str] = []
    for c in counts:
        totals[c.state] = totals.get(c.state, 0) + c.n
        if c.estimated and c.state not in estimated:
            estimated.append(c.state)
    return totals, estimated


def shown(n: int, estimated: bool) -> str:
    """A count for people: ``~`` before an estimate."""
    return f"~{n}" if estimated else str(n)
