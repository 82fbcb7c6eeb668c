"""``qsup schedule list|pause|resume|run NAME``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from qsup import admin, scheduler
from qsup.cli.common import ConfigFile, Json, database, print_json, print_table
from qsup.cli.common import settings as load_settings
from qsup.cli.options import flag_values, setting_flags
from qsup.settings import Config

app = typer.Typer(
    help="Cron schedules: those the servers declared (running or stopped in the last day), read"
    " from the database, and those of the config file (\\[\\[schedules]], or registered from"
    " Python in a module of `imports` / --import).",
    no_args_is_help=True,
)
Name = Annotated[str, typer.Argument(help="Schedule name.")]
FLAGS = ("database_url", "imports")  # the setting flags every schedule command takes


def settings(config: str | None, flags: dict[str, Any]) -> Config:
    """Settings with the schedules validated before any database work (bad ones: exit 2). The
    modules serve would import are imported: schedules registered from Python are known too."""
    cfg = load_settings(config, **flag_values(flags))
    scheduler.load_schedules(cfg, check_tasks=False)
    return cfg


def _when(value: datetime | None) -> str:
    return value.isoformat(" ", "seconds") if value else "-"


@app.command("list")
@setting_flags(*FLAGS)
def list_(
    json: Json = False,
    config: ConfigFile = None,
    **flags: Any,
) -> None:
    """Every schedule: cron, task, servers, paused or active, last and next run."""
    cfg = settings(config, flags)
    with database(cfg) as conn:
        rows = admin.list_schedules(conn, cfg)
    if json:
        print_json(rows)
        return
    print_table(
        ("name", "cron", "task", "queue", "servers", "state", "last run", "next run"),
        [
            (
                r["name"],
                f"{r['cron']} ({r['timezone']})",
                r["task"],
                r["queue"],
                _servers(r["servers"]),
                "paused" if r["paused"] else "active",
                _when(r["last_fire"]),
                "-" if r["paused"] else _when(r["next_fire"]),
            )
            for r in rows
        ],
    )


def _servers(servers: list[dict[str, Any]]) -> str:
    """``3 (web1), 5 (web2, stopped)``; ``-`` for a schedule only the config file names."""
    return (
        ", ".join(f"{s['id']} ({s['host']}{'' if s['running'] else ', stopped'})" for s in servers)
        or "-"
    )


def _set_paused(
    name: str,
    paused: bool,
    json: bool,
    config: str | None,
    flags: dict[str, Any],
) -> None:
    cfg = settings(config, flags)
    with database(cfg) as conn:
        spec, _ = admin.find_schedule(conn, cfg, name)
        admin.set_schedule_paused(conn, spec, paused)
    if json:
        print_json({"schedule": name, "paused": paused})
    else:
        typer.echo(f"schedule {name}: {'paused' if paused else 'resumed'}")


@app.command()
@setting_flags(*FLAGS)
def pause(
    name: Name,
    json: Json = False,
    config: ConfigFile = None,
    **flags: Any,
) -> None:
    """Stop a schedule from firing, on every server."""
    _set_paused(name, True, json, config, flags)


@app.command()
@setting_flags(*FLAGS)
def resume(
    name: Name,
    json: Json = False,
    config: ConfigFile = None,
    **flags: Any,
) -> None:
    """Let a paused schedule fire again from its next tick (passed ticks are skipped)."""
    _set_paused(name, False, json, config, flags)


@app.command()
@setting_flags(*FLAGS)
def run(
    name: Name,
    json: Json = False,
    config: ConfigFile = None,
    **flags: Any,
) -> None:
    """Enqueue a schedule's task now (even when paused) and print its id."""
    cfg = settings(config, flags)
    with database(cfg) as conn:
        task_id = admin.run_schedule_now(conn, cfg, name, cfg.wake_channel)
    if json:
        print_json({"id": task_id, "schedule": name})
    else:
        typer.echo(str(task_id))
