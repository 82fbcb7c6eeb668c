"""``qsup config show|check|example``."""

from __future__ import annotations

from typing import Annotated

import typer

from qsup.cli.common import ConfigFile, DatabaseUrl, Json, print_json, print_table
from qsup.cli.serve_cmd import MinWorkers, Queues, Workers
from qsup.scheduler import validate_schedules
from qsup.settings import SETTINGS, display_value, example_toml, load_config

app = typer.Typer(help="Configuration.", no_args_is_help=True)


@app.command()
def show(
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    workers: Workers = None,
    min_workers: MinWorkers = None,
    queues: Queues = None,
    host: Annotated[str | None, typer.Option("--host", help="HTTP bind address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port.")] = None,
) -> None:
    """Every effective setting, its value and where it came from (default, file:line, env, flag).

    Takes the same setting flags as serve, to show what serve would use with them."""
    flags = {
        "database_url": database_url,
        "max_workers": workers,
        "min_workers": min_workers,
        "queues": queues,
        "host": host,
        "port": port,
    }
    cfg = load_config(flags, config_file=config)
    schedules = validate_schedules(cfg)
    rows = [
        (f.name, display_value(f.name, getattr(cfg, f.name)), cfg.sources[f.name]) for f in SETTINGS
    ]
    if json:
        report = {
            f.name: {"value": _raw(f.name, getattr(cfg, f.name)), "source": cfg.sources[f.name]}
            for f in SETTINGS
        }
        report["schedules"] = {
            "value": [s.name for s in schedules],
            "source": cfg.sources.get("schedules", "default"),
        }
        print_json(report)
        return
    schedule_row = (
        "schedules",
        ",".join(s.name for s in schedules),
        cfg.sources.get("schedules", "default"),
    )
    print_table(("setting", "value", "source"), [*rows, schedule_row])


def _raw(name: str, value: object) -> object:
    """Typed value for JSON; secrets masked like in the table."""
    shown = display_value(name, value)
    return shown if shown == "********" else value


@app.command()
def check(config: ConfigFile = None) -> None:
    """Validate the configuration (file, environment, schedules); exit 2 naming the problem."""
    cfg = load_config({}, config_file=config)
    count = len(validate_schedules(cfg))
    typer.echo(f"configuration ok ({count} schedule(s))")


@app.command()
def example() -> None:
    """Print a commented config file with every key at its default (config/queue.toml)."""
    typer.echo(example_toml(), nl=False)
