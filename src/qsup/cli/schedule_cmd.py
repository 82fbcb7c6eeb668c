"""``qsup schedule list|pause|resume|run NAME``."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Annotated

import typer

from qsup import admin, scheduler
from qsup.cli.common import ConfigFile, DatabaseUrl, Json, database, print_json, print_table
from qsup.cli.common import settings as load_settings
from qsup.settings import Config

app = typer.Typer(
    help="Cron schedules (\\[\\[schedules]] in the config file).", no_args_is_help=True
)
Name = Annotated[str, typer.Argument(help="Schedule name.")]


def settings(config: str | None, database_url: str | None) -> Config:
    """Settings with the schedules validated before any database work (bad ones: exit 2)."""
    cfg = load_settings(config, database_url=database_url)
    scheduler.validate_schedules(cfg)
    return cfg


def _when(value: datetime | None) -> str:
    return value.isoformat(" ", "seconds") if value else "-"


@app.command("list")
def list_(json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Every schedule: cron, task, paused or active, last and next run."""
    cfg = settings(config, database_url)
    with database(cfg) as conn:
        rows = admin.list_schedules(conn, cfg)
    if json:
        print_json(rows)
        return
    print_table(
        ("name", "cron", "task", "queue", "state", "last run", "next run"),
        [
            (
                r["name"],
                f"{r['cron']} ({r['timezone']})",
                r["task"],
                r["queue"],
                "paused" if r["paused"] else "active",
                _when(r["last_fire"]),
                "-" if r["paused"] else _when(r["next_fire"]),
            )
            for r in rows
        ],
    )


def _set_paused(name: str, paused: bool, config: str | None, database_url: str | None) -> None:
    cfg = settings(config, database_url)
    scheduler.find_schedule(cfg, name)
    with database(cfg) as conn:
        admin.set_schedule_paused(conn, name, paused)
    typer.echo(f"schedule {name}: {'paused' if paused else 'resumed'}")


@app.command()
def pause(name: Name, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Stop a schedule from firing, on every server."""
    _set_paused(name, True, config, database_url)


@app.command()
def resume(name: Name, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Let a paused schedule fire again from its next tick (passed ticks are skipped)."""
    _set_paused(name, False, config, database_url)


@app.command()
def run(
    name: Name, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Enqueue a schedule's task now (even when paused) and print its id."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cfg = settings(config, database_url)
    with database(cfg) as conn:
        task_id = admin.run_schedule_now(conn, cfg, name, cfg.wake_channel)
    if json:
        print_json({"id": task_id, "schedule": name})
    else:
        typer.echo(str(task_id))
