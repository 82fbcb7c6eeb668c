"""Flow control in the database: the limited claim, the pause and limit rows (``flow.sql``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import psycopg

from qsup.flow import Limits, Rate
from qsup.protocol import Job
from qsup.sql import queries

Conn = psycopg.Connection[Any]
Q = queries()
FLOW_PAYLOAD = "qsup:flow"  # NOTIFY payload: pauses or limits changed (not a queue)


class QueueFlow(NamedTuple):
    """What the claim of one queue must obey now."""

    paused: bool
    limits: Limits


class Claimed(NamedTuple):
    """A limited claim: the jobs, those taken ahead (no slot yet), and each queue's
    ``retry_in`` (see ``qsup_claim_limited``)."""

    jobs: list[Job]
    ahead: list[Job]
    retry_in: dict[str, float | None]


def _limits(concurrency: Any, rate: Any, period: Any, key_concurrency: Any) -> Limits:
    return Limits(concurrency, Rate(rate, period) if rate else None, key_concurrency)


def flow_state(conn: Conn) -> dict[str, QueueFlow]:
    return {row[0]: QueueFlow(row[1], _limits(*row[2:6])) for row in conn.execute(Q["flow_state"])}


def claim_limited(
    conn: Conn,
    server_id: int,
    queues: Sequence[str],
    want: int,
    default_timeout: float,
    finished: Sequence[str],
    aheads: Sequence[int],
) -> Claimed:
    """Claim up to ``want`` tasks of the limited ``queues``, in order; ``finished``: tasks this
    server saw end whose outcome is not written yet (their slots are free); ``aheads``, per
    queue: how many to take ahead of the slots this server holds there."""
    params = {"server_id": server_id, "queues": list(queues), "want": want,
              "default_timeout": default_timeout, "finished": list(finished),
              "aheads": list(aheads)}  # fmt: skip
    claimed = Claimed([], [], {})
    for *job, ahead, retry_in in conn.execute(Q["claim_limited"], params):
        if job[0] is None:  # a queue's status row
            claimed.retry_in[job[8]] = retry_in
        else:
            (claimed.ahead if ahead else claimed.jobs).append(Job(*job))
    return claimed


def hand_on_slots(conn: Conn, server_id: int, task_ids: Sequence[str]) -> None:
    """Tasks taken ahead that took over the slot of one that ended (see ``Gate.hand_on``)."""
    conn.execute(Q["hand_on_slots"], {"server_id": server_id, "ids": list(task_ids)})


def _file_params(limits: Mapping[str, Limits]) -> dict[str, Any]:
    names = sorted(limits)
    return {
        "queues": names,
        "concurrency": [limits[q].concurrency for q in names],
        "rate": [r.starts if (r := limits[q].rate) else None for q in names],
        "period": [r.period if (r := limits[q].rate) else None for q in names],
        "key_concurrency": [limits[q].key_concurrency for q in names],
    }


def _to_json(limits: Limits) -> dict[str, Any]:
    rate = limits.rate
    return {"concurrency": limits.concurrency, "rate": rate.starts if rate else None,
            "period": rate.period if rate else None,
            "key_concurrency": limits.key_concurrency}  # fmt: skip


def _from_json(row: Mapping[str, Any]) -> Limits:
    return _limits(row.get("concurrency"), row.get("rate"), row.get("period"),
                   row.get("key_concurrency"))  # fmt: skip


def declare_file_limits(
    conn: Conn, server_id: int, limits: Mapping[str, Limits], source: str, channel: str | None
) -> list[str]:
    """Server ``server_id``'s file (``source``) declares ``limits``: the queues it names that
    have no file limits in force take them (returned); what is in force elsewhere stays. A
    file without ``[limits]`` declares nothing and changes nothing."""
    queues = {queue: _to_json(value) for queue, value in limits.items()}
    declared = json.dumps({"source": source, "queues": queues}) if queues else None
    params = _file_params(limits) | {
        "server_id": server_id, "declared": declared, "source": source, "channel": channel
    }  # fmt: skip
    return [row[0] for row in conn.execute(Q["declare_file_limits"], params)]


class InForce(NamedTuple):
    """A queue's file limits in force and where they came from."""

    limits: Limits
    source: str | None


def file_limits_in_force(conn: Conn, queues: Sequence[str]) -> dict[str, InForce]:
    rows = conn.execute(Q["file_limits_in_force"], {"queues": list(queues)})
    return {row[0]: InForce(_limits(*row[1:5]), row[5]) for row in rows}


class Declared(NamedTuple):
    """The ``[limits]`` a running server's file declared."""

    server_id: int
    host: str | None
    source: str
    queues: dict[str, Limits]


def declared_file_limits(conn: Conn) -> list[Declared]:
    return [
        Declared(
            server,
            host,
            found.get("source", "?"),
            {q: _from_json(v) for q, v in found.get("queues", {}).items()},
        )  # fmt: skip
        for server, host, found in conn.execute(Q["declared_file_limits"])
    ]


def apply_file_limits(
    conn: Conn, limits: Mapping[str, Limits], source: str, channel: str | None
) -> list[str]:
    """Make ``limits`` the file limits of every queue (queues it does not name lose theirs),
    on purpose (``qsup queue limits --apply``); returns the queues changed."""
    params = _file_params(limits) | {"source": source, "channel": channel}
    return [row[0] for row in conn.execute(Q["apply_file_limits"], params)]


def set_paused(conn: Conn, queue: str, paused: bool, channel: str | None) -> None:
    conn.execute(Q["set_paused"], {"queue": queue, "paused": paused, "channel": channel})


def set_runtime_limits(
    conn: Conn, queue: str, limits: Limits, clear: bool, channel: str | None
) -> None:
    """Override the file's limits (the fields given) until cleared; ``clear`` drops the
    overrides first."""
    rate = limits.rate
    params = {
        "queue": queue,
        "concurrency": limits.concurrency,
        "rate": rate.starts if rate else None,
        "period": rate.period if rate else None,
        "key_concurrency": limits.key_concurrency,
        "clear": clear,
        "channel": channel,
    }
    conn.execute(Q["set_runtime_limits"], params)


class Usage(NamedTuple):
    """A queue's pause, limits by source, and their use now."""

    queue: str
    paused: bool
    file: Limits
    runtime: Limits
    file_source: str | None
    running: int
    started_in_window: int

    @property
    def effective(self) -> Limits:
        run, file = self.runtime, self.file
        return Limits(
            file.concurrency if run.concurrency is None else run.concurrency,
            file.rate if run.rate is None else run.rate,
            file.key_concurrency if run.key_concurrency is None else run.key_concurrency,
        )


def flow_usage(conn: Conn) -> list[Usage]:
    return [
        Usage(
            row[0], row[1], _limits(*row[2:6]), _limits(*row[6:10]), row[10], row[11], int(row[12])
        )
        for row in conn.execute(Q["flow_usage"])
    ]


def _as_dict(limits: Limits) -> dict[str, Any]:
    rate = limits.rate
    return {"concurrency": limits.concurrency, "rate": str(rate) if rate else None,
            "key_concurrency": limits.key_concurrency}  # fmt: skip


def usage_report(conn: Conn) -> list[dict[str, Any]]:
    """Every paused or limited queue as JSON: the limits in force, where each came from
    (``file`` or ``runtime``; ``file_source``: which file, how), the running servers whose
    file declares other limits than the file limits in force (``file_differs``), the tasks
    running under them and the starts in the current rate window (CLI, /api/stats, /metrics,
    dashboard)."""
    declared = declared_file_limits(conn)
    report = []
    for use in flow_usage(conn):
        limits = _as_dict(use.effective)
        runtime = _as_dict(use.runtime)
        source = {
            k: ("runtime" if runtime[k] is not None else "file") for k, v in limits.items() if v
        }
        differs = [
            {
                "server": d.server_id,
                "host": d.host,
                "source": d.source,
                **_as_dict(d.queues[use.queue]),
            }  # fmt: skip
            for d in declared
            if d.queues.get(use.queue, use.file) != use.file
        ]
        report.append(
            {
                "queue": use.queue,
                "paused": use.paused,
                **limits,
                "source": source,
                "file_source": use.file_source,
                "file_differs": differs,
                "running": use.running,
                "started_in_window": use.started_in_window,
            }  # fmt: skip
        )
    return report
