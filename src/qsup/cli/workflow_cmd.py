"""``qsup workflow show|cancel ID``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from qsup import probes, workflow_store
from qsup.cli.common import (
    ConfigFile,
    DatabaseUrl,
    Json,
    database,
    print_json,
    print_table,
    settings,
)
from qsup.errors import ConfigError, QsupError, TaskNotFound
from qsup.task_ids import resolve_task_id, short_id

app = typer.Typer(help="Look at and cancel one workflow.", no_args_is_help=True)
WorkflowId = Annotated[
    str,
    typer.Argument(
        help="Workflow id, or the id (full, short, prefix or suffix) of one of its steps."
    ),
]


def resolve_workflow_id(conn: Any, given: str) -> uuid.UUID:
    """A workflow's id from its own id or from any of its steps' ids."""
    try:
        exact = uuid.UUID(given)
    except ValueError:
        exact = None
    if exact is not None and workflow_store.get(conn, exact) is not None:
        return exact
    try:
        task_id = resolve_task_id(conn, given)
    except TaskNotFound:
        raise QsupError(f"no workflow {given}") from None
    except ConfigError:  # not hex, or several steps match
        raise ConfigError(
            f"workflow id {given!r}: give the workflow's UUID, or a step's id (full, its 12-digit"
            " short form, or a unique prefix or suffix of 4+ hex digits)"
        ) from None
    found = workflow_store.of_task(conn, task_id)
    if found is None:
        raise QsupError(f"task {short_id(task_id)} belongs to no workflow")
    return found


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


@app.command()
def show(
    workflow_id: WorkflowId,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The workflow's steps as a tree, with states, durations and errors."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        shown = workflow_store.describe(conn, resolve_workflow_id(conn, workflow_id))
    if shown is None:
        raise QsupError(f"no workflow {workflow_id}")
    if json:
        print_json(shown)
        return
    typer.echo(f"workflow {shown['id']}: {shown['state']} ({shown['step_count']} steps)")
    rows = []
    for s in shown["steps"]:
        undo = " (undo)" if s["compensates"] else ""
        depth = s["path"].count(".") - (1 if undo else 0)
        name = f"{'  ' * depth}{s['path']} {s['name']}{undo}"
        duration = f"{s['duration']:.3f} s" if s["duration"] is not None else ""
        progress = probes.progress_line(s["progress"])  # each step shows its own
        rows.append((name, short_id(s["task_id"]), s["state"], duration, progress,
                     _last_line(s["error_message"])))  # fmt: skip
    print_table(("step", "task", "state", "duration", "progress", "error"), rows)


@app.command()
def cancel(
    workflow_id: WorkflowId,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Cancel a workflow: its unstarted steps at once, its running ones stopped by their
    servers; then the compensations of its completed steps run, newest first."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        full_id = resolve_workflow_id(conn, workflow_id)
        workflow_store.cancel_workflow(conn, full_id, cfg.wake_channel)
    if json:
        print_json({"id": full_id, "state": "cancelled"})
    else:
        typer.echo(f"workflow {full_id}: cancelled")
