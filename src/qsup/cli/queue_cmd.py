"""``qsup queue status|start|clear|retry|stats|servers`` (and flow_cmd's pause, resume, ...)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from qsup import admin, counts, flow_store, probes, repo
from qsup import stats as task_stats
from qsup.accounting import megabytes
from qsup.cli import flow_cmd
from qsup.cli.common import (
    ConfigFile,
    DatabaseUrl,
    Json,
    database,
    print_json,
    print_table,
    settings,
)
from qsup.cli.filters import Yes, confirm, filter_options, given, page_of, selection
from qsup.cli.options import setting_flags
from qsup.cli.serve_cmd import WORKER_FLAGS
from qsup.cli.serve_cmd import start as start_server
from qsup.errors import ConfigError, QsupError
from qsup.states import CLEARABLE
from qsup.task_ids import resolve_task_id, short_id

app = typer.Typer(help="Look at and operate the queue.", no_args_is_help=True)


@app.command()
@setting_flags(*WORKER_FLAGS)
def start(config: ConfigFile = None, **flags: Any) -> None:
    """Run workers without HTTP (same as serve --no-http)."""
    start_server(config, http=False, **flags)


@app.command()
def status(json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Servers, workers, task counts by queue and state, oldest waiting task, paused and
    limited queues."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        servers = [s for s in repo.list_servers(conn) if s["is_running"]]
        found = counts.task_counts(conn)
        oldest = repo.oldest_waiting(conn)
        flow = flow_store.usage_report(conn)
        stranded = probes.stranded_work(conn, cfg.stranded_after, cfg.server_timeout)
    by_state, estimated = counts.by_state(found)
    report = {
        "servers": len(servers),
        "workers_active": sum(s["active_workers"] for s in servers),
        "workers_idle": sum(s["idle_workers"] for s in servers),
        "tasks_by_state": {state: n for state, n in by_state.items() if n},
        "tasks_by_queue": [
            {"queue": c.queue, "state": c.state, "count": c.n, "estimated": c.estimated}
            for c in found
        ],
        "estimated": bool(estimated),  # some counts are the planner's (~ in the table)
        "oldest_waiting_seconds": oldest,
        "flow": flow,
        **stranded.as_json(),
    }
    if json:
        print_json(report)
        return
    typer.echo(
        f"servers running: {report['servers']}  workers active: "
        f"{report['workers_active']}  idle: {report['workers_idle']}"
    )
    print_table(
        ("queue", "state", "count"),
        [(c.queue, c.state, counts.shown(c.n, c.estimated)) for c in found],
    )
    if estimated:
        typer.echo(f"~ estimated: more than {counts.EXACT_UP_TO} tasks")
    typer.echo("oldest waiting task: " + (f"{oldest:.1f} s" if oldest is not None else "none"))
    if flow:
        flow_cmd.print_limits(flow, title="paused and limited queues")
    _print_stranded(stranded, cfg.stranded_after)


def _print_stranded(stranded: probes.Stranded, after: float) -> None:
    for queue, n in stranded.queues.items():
        typer.echo(
            f"STRANDED: queue {queue}: {n} task(s) due for more than {after:g} s, and no live"
            " server serves it (--queues)"
        )
    for server in stranded.stalled:
        typer.echo(
            f"STALLED: server {server} has idle workers, yet tasks of its queues have been due"
            f" for more than {after:g} s"
        )


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


States = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        help="Only tasks in this state (repeatable or comma-separated; default: enqueued,"
        " waiting, failed, cancelled, completed; picked_up/running are never cleared).",
    ),
]
QueueName = Annotated[str | None, typer.Option("--queue", help="Only tasks of this queue.")]


@app.command()
def clear(
    state: States = None,
    queue: QueueName = None,
    yes: Yes = False,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete tasks and their logs (asks first, or needs --yes)."""
    states = _split(state) or list(CLEARABLE)
    bad = [s for s in states if s not in CLEARABLE]
    if bad:
        raise ConfigError(
            f"queue clear: --state {bad[0]!r} cannot be cleared"
            f" (choose from {', '.join(CLEARABLE)})"
        )
    what = f"tasks in state {', '.join(states)}" + (f" of queue {queue!r}" if queue else "")
    confirm(f"Delete all {what}?", yes, "queue clear")
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        count = admin.clear_tasks(conn, states=states, queue=queue)
    if json:
        print_json({"deleted": count})
    else:
        typer.echo(f"deleted {count} task(s)")


RETRYABLE = ("failed", "cancelled")


@app.command()
@filter_options(RETRYABLE, None)
def retry(
    task_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Task ids (or unique prefixes) of failed or cancelled tasks."),
    ] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Retry every failed task (--state failed).")
    ] = False,
    yes: Yes = False,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    **filters: Any,
) -> None:
    """Put failed/cancelled tasks back in the queue with their attempts reset: the ids given,
    or every task the filters select (after a count and a confirmation)."""
    by_filter = all_failed or given(filters, None)
    if by_filter == bool(task_ids):
        raise ConfigError("queue retry: give task ids or filters (--all-failed, --state, ...)")
    if all_failed:
        filters["state"] = [*(filters["state"] or []), "failed"]
    chosen = selection(filters, RETRYABLE)
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        if by_filter:
            found = admin.find_tasks(conn, page_of(conn, chosen, filters["before"]))
            ids = [r["id"] for r in found]
            if ids:
                confirm(f"Retry {len(ids)} task(s) {chosen.describe()}?", yes, "queue retry")
        else:
            ids = [resolve_task_id(conn, t) for t in task_ids or []]
        retried = admin.retry_tasks(conn, ids, channel=cfg.wake_channel) if ids else []
    done = set(retried)
    left = [short_id(i) for i in dict.fromkeys(ids) if i not in done]
    if json:
        print_json({"retried": len(retried), "not_retried": left})
    else:
        typer.echo(f"retried {len(retried)} task(s)")
    if left:
        raise QsupError(
            f"not retried: {', '.join(left)} (no such task, not failed or cancelled, or its"
            " unique key is held by an unfinished task)"
        )


@app.command()
def stats(json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Throughput (last minute/hour), run time by task name (average, p50, p95), failures,
    cost; from the per-minute series servers write."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        report = task_stats.queue_stats(conn)
    if json:
        print_json(report)
        return
    typer.echo(
        f"completed last minute: {report['completed_last_minute']}  last hour: "
        f"{report['completed_last_hour']} "
        f"({report['throughput_per_minute_last_hour']:.2f}/min)  "
        f"failed last hour: {report['failed_last_hour']}"
    )
    print_table(
        ("task", "completed (1 h)", "avg s", "p50 s", "p95 s"),
        [
            (r["name"], str(r["completed"]), *(_seconds(r[k]) for k in SECONDS_COLUMNS))
            for r in report["durations_by_task"]
        ],
        title="run time by task",
    )
    print_table(
        ("task", "failed (1 h)"),
        [(r["name"], str(r["failed"])) for r in report["failures_by_task"]],
        title="failures by task",
    )
    _print_usage(report)
    estimated = set(report["estimated_states"])
    typer.echo(
        "tasks by state: "
        + ", ".join(
            f"{state} {counts.shown(n, state in estimated)}"
            for state, n in report["tasks_by_state"].items()
        )
    )


SECONDS_COLUMNS = ("avg_seconds", "p50_seconds", "p95_seconds")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_usage(report: dict[str, Any]) -> None:
    """The three rankings of ``stats``: CPU, peak memory, memory growth (leak suspects)."""
    for ranking, title in (
        ("cpu", "CPU by task (1 h)"),
        ("peak_memory", "peak memory by task (1 h)"),
        ("memory_growth", "memory growth per run by task (1 h): leak suspects"),
    ):
        print_table(
            ("task", "runs", "CPU s", "avg CPU s", "peak", "growth/run", "growth total"),
            [
                (
                    r["task"],
                    str(r["runs"]),
                    f"{r['cpu_seconds'] or 0:.3f}",
                    f"{r['avg_cpu_seconds'] or 0:.3f}",
                    megabytes(r["peak_memory_bytes"]),
                    megabytes(r["avg_memory_growth_bytes"]),
                    megabytes(r["memory_growth_bytes"]),
                )
                for r in report[ranking]
            ],
            title=title,
        )


@app.command()
def servers(
    json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Servers (running, and stopped in the last day) with their workers and heartbeat."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        rows = repo.list_servers(conn)
    if json:
        print_json(rows)
        return
    print_table(
        (
            "id",
            "server",
            "host",
            "pid",
            "running",
            "workers max/active/idle",
            "queues",
            "last heartbeat",
        ),
        [
            (
                str(r["id"]),
                r["server_name"],
                r["hostname"] or "",
                str(r["pid"] or ""),
                "yes" if r["is_running"] else "no",
                f"{r['max_workers']}/{r['active_workers']}/{r['idle_workers']}",
                ",".join(r["queues"]) or "all",
                r["last_heartbeat"].isoformat(" ", "seconds"),
            )
            for r in rows
        ],
    )


for command in (flow_cmd.pause, flow_cmd.resume, flow_cmd.limit, flow_cmd.limits):
    app.command()(command)
