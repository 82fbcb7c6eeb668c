"""``qsup task show|logs|cancel|retry ID``."""

from __future__ import annotations

from typing import Annotated

import typer

from qsup import admin, repo
from qsup.cli.common import (
    ConfigFile,
    DatabaseUrl,
    Json,
    database,
    print_json,
    resolve_task_id,
    settings,
)
from qsup.errors import QsupError, TaskNotFound

app = typer.Typer(help="Look at and operate one task.", no_args_is_help=True)
TaskId = Annotated[str, typer.Argument(help="Task id or a unique prefix of it (4+ hex digits).")]


@app.command()
def show(
    task_id: str = typer.Argument(..., help="Task id or a unique prefix of it."),
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show a task: state, dates, attempts, result or error."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        row = repo.get_task(conn, resolve_task_id(conn, task_id))
    if row is None:
        raise TaskNotFound(f"no task {task_id}")
    if json:
        print_json(row)
        return
    for key, value in row.items():
        typer.echo(f"{key:>14}: {'' if value is None else value}")


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
    from rich.console import Console
    from rich.table import Table

    table = Table("date", "type", "message")
    for row in rows:
        table.add_row(
            row["date_created"].isoformat(" ", "milliseconds"), row["type"], row["message"] or ""
        )
    Console().print(table)


@app.command()
def cancel(
    task_id: TaskId, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Cancel a task: at once if it has not started (with its waiting dependents), else ask
    its server to stop it."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        full_id = resolve_task_id(conn, task_id)
        outcome = admin.cancel_task(conn, full_id, cfg.wake_channel)
    if json:
        print_json({"id": full_id, "state": outcome})
    else:
        typer.echo(f"{full_id}: {outcome}")


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
            state = row["state"] if row else "gone"
            raise QsupError(
                f"task {full_id} is {state}: only failed or cancelled tasks can be"
                " retried (or its unique key is held by an unfinished task)"
            )
    if json:
        print_json({"id": full_id, "state": "enqueued"})
    else:
        typer.echo(f"{full_id}: enqueued")
