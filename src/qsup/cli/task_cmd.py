"""``qsup task show ID``."""

from __future__ import annotations

import typer

from qsup import repo
from qsup.cli.common import (ConfigFile, DatabaseUrl, Json, database, print_json,
                             resolve_task_id, settings)
from qsup.errors import TaskNotFound

app = typer.Typer(help="Look at one task.", no_args_is_help=True)


@app.command()
def show(task_id: str = typer.Argument(..., help="Task id or a unique prefix of it."),
         json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
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
