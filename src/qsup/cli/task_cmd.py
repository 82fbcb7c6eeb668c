"""``qsup task list`` (filters) and ``qsup task show|stack|logs|cancel|retry ID``."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any

import typer

from qsup import admin, probes, repo
from qsup.accounting import megabytes
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
from qsup.errors import ConfigError, QsupError, TaskNotFound
from qsup.states import STATES
from qsup.task_ids import resolve_task_id, short_id

STACK_WAIT = 2.0  # seconds `task stack` waits for the worker's answer
SHOW_WAIT = 1.0  # seconds `task show` waits for a running task's figures
app = typer.Typer(help="Look at and operate one task.", no_args_is_help=True)
TaskIdArgument = typer.Argument(
    help="Task id: the full id, its 12-digit short form, or a unique prefix or suffix"
    " (4+ hex digits, dashes optional)."
)
TaskId = Annotated[str, TaskIdArgument]


def _shown(key: str, value: Any) -> str:
    """A field of ``task show``: ids in their short form, nothing for None."""
    if value is None:
        return ""
    if key.endswith("_bytes"):
        return megabytes(value)
    if key.endswith("_seconds"):
        return f"{value:.3f} s"
    if key == "progress":
        return probes.progress_line(value)
    if key == "running_now":
        return ", ".join(f"{k} {_shown(k, v)}" for k, v in value.items() if k != "sampled_at")
    if key == "headers":  # as they were sent (--header, POST /api/tasks)
        return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return short_id(value) if key in ("id", "parent_task") else str(value)


@app.command()
def show(
    task_id: TaskId, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Show a task: state, dates, attempts, result or error."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        row = repo.get_task(conn, resolve_task_id(conn, task_id))
        if row is None:
            raise TaskNotFound(f"no task {task_id}")
        if row["state"] in probes.RUNNING:  # what it has cost so far, asked of its worker
            row["running_now"] = _running_now(conn, row["id"], cfg.wake_channel)
    if json:
        print_json(row)
        return
    typer.echo(f"{'id':>19}: {short_id(row['id'])}\n{'full id':>19}: {row['id']}")
    for key, value in row.items():
        if key != "id":
            typer.echo(f"{key:>19}: {_shown(key, value)}")


def _running_now(conn: Any, task_id: Any, channel: str | None) -> dict[str, Any] | None:
    """The running task's CPU, RSS and run time, from its worker (waits up to a second)."""
    try:
        row = probes.inspect(conn, task_id, channel, wait=SHOW_WAIT)
    except probes.CANNOT_ASK:
        return None
    return probes.running_figures(row) if row else probes.last_answer(conn, task_id)


@app.command()
def stack(
    task_id: TaskId, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Print the live Python stack of the worker running a task, innermost frame last (for an
    async task: its coroutine chain). Exit 1 when the task is not running."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        full_id = resolve_task_id(conn, task_id)
        row = probes.inspect(conn, full_id, cfg.wake_channel, wait=STACK_WAIT)
    if row is None:
        raise QsupError(
            f"task {short_id(full_id)}: its server did not answer within {STACK_WAIT:g} s"
        )
    if json:
        print_json({"id": full_id, "stack": row["stack"], **probes.running_figures(row)})
        return
    figures = probes.running_figures(row)
    typer.echo(
        f"task {short_id(full_id)}: running {figures['running_seconds']:.1f} s, CPU"
        f" {figures['cpu_seconds']:.3f} s, RSS {megabytes(figures['rss_bytes'])}"
    )
    typer.echo(row["stack"].rstrip("\n"))


@app.command()
def logs(
    task_id: TaskId, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """A task's log rows, oldest first."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        rows = admin.task_logs(conn, resolve_task_id(conn, task_id))
    if json:
        print_json(rows)
        return
    print_table(
        ("date", "type", "message"),
        [
            (r["date_created"].isoformat(" ", "milliseconds"), r["type"], r["message"] or "")
            for r in rows
        ],
    )


LIST_LIMIT = 50
CANCELLABLE = ("enqueued", "waiting", "picked_up", "running")


@app.command("list")
@filter_options(STATES, LIST_LIMIT)
def list_tasks(
    json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None, **filters: Any
) -> None:
    """Find tasks by state, queue, name and enqueue time, newest first; page on with --before
    (the next command is printed on stderr when the page is full)."""
    chosen = selection(filters, STATES)
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        rows, more = admin.find_page(conn, page_of(conn, chosen, filters["before"]))
    if json:
        print_json(rows)
    else:
        print_table(
            ("id", "state", "queue", "name", "enqueued", "attempts", "error"),
            [
                (
                    short_id(r["id"]),
                    r["state"],
                    r["queue"],
                    r["name"],
                    r["date_enqueued"].isoformat(" ", "seconds"),
                    f"{r['attempts']}/{r['max_retries'] + 1}",
                    (r["error_message"] or "").split("\n", 1)[0],
                )
                for r in rows
            ],
        )
    if more:
        typer.echo(f"more: add --before {rows[-1]['id']}", err=True)


@app.command()
@filter_options(CANCELLABLE, None)
def cancel(
    task_id: Annotated[str | None, TaskIdArgument] = None,
    yes: Yes = False,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    **filters: Any,
) -> None:
    """Cancel a task, or every task the filters select (after a count and a confirmation):
    at once if it has not started (with its waiting dependents), else ask its server to stop
    it."""
    if given(filters, None) == bool(task_id):
        raise ConfigError("task cancel: give a task id or filters (--state, --queue, --name, ...)")
    chosen = selection(filters, CANCELLABLE)
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        if task_id:
            full_id = resolve_task_id(conn, task_id)
            outcome = admin.cancel_task(conn, full_id, cfg.wake_channel)
            report: dict[str, Any] = {"id": full_id, "state": outcome}
            line = f"{short_id(full_id)}: {outcome}"
        else:
            found = admin.find_tasks(conn, page_of(conn, chosen, filters["before"]))
            if found:
                confirm(f"Cancel {len(found)} task(s) {chosen.describe()}?", yes, "task cancel")
            report = admin.cancel_tasks(conn, [r["id"] for r in found], cfg.wake_channel)
            line = ", ".join(f"{outcome} {n}" for outcome, n in report.items())
    if json:
        print_json(report)
    else:
        typer.echo(line)


@app.command()
def retry(
    task_id: TaskId, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Put a failed or cancelled task back in the queue with its attempts reset."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        full_id = resolve_task_id(conn, task_id)
        if not admin.retry_tasks(conn, [full_id], channel=cfg.wake_channel):
            row = repo.get_task(conn, full_id)
            if row is None:
                raise TaskNotFound(f"no task {task_id}")
            raise QsupError(
                f"task {short_id(full_id)} is {row['state']}: only failed or cancelled tasks can"
                " be retried (or its unique key is held by an unfinished task)"
            )
    if json:
        print_json({"id": full_id, "state": "enqueued"})
    else:
        typer.echo(f"{short_id(full_id)}: enqueued")
