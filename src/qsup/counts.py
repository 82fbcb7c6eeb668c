"""Task counts by queue and state that stay cheap at millions of rows.

Each state is counted exactly up to :data:`EXACT_UP_TO` rows (read through the state index,
so at most that many rows per state whatever the table holds); a state with more is
estimated from the planner's statistics and marked, as Oban and River do for their
dashboards. Counting 5,000,000 finished rows exactly takes seconds; nobody needs the last
digit of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from qsup.sql import queries
from qsup.states import STATES

Conn = psycopg.Connection[Any]
EXACT_UP_TO = 10_000  # rows counted per state: about 10 ms through the state index


@dataclass(frozen=True)
class Count:
    queue: str
    state: str
    n: int
    estimated: bool


def task_counts(conn: Conn, cap: int = EXACT_UP_TO) -> list[Count]:
    """Counts per queue and state, ordered by queue then state; see :func:`scale`."""
    rows = conn.execute(queries()["task_counts"], {"cap": cap}).fetchall()
    return scale([(q, s, int(n), planned) for s, q, n, planned in rows], cap)


def scale(rows: list[tuple[str, str, int, float | None]], cap: int) -> list[Count]:
    """``(queue, state, rows read, planner's rows of the state)``: a state whose rows read
    exceed ``cap`` was cut short, so its total is the planner's (at least what was read) and
    each queue gets its share of what was read."""
    read: dict[str, int] = {}
    for _, state, n, _ in rows:
        read[state] = read.get(state, 0) + n
    counts = []
    for queue, state, n, planned in rows:
        if read[state] <= cap:
            counts.append(Count(queue, state, n, False))
            continue
        total = max(planned or 0.0, float(read[state]))
        counts.append(Count(queue, state, round(n * total / read[state]), True))
    return counts


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
