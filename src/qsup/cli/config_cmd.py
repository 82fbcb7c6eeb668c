"""``qsup config show|check|example``."""

from __future__ import annotations

from typing import Any

import typer

from qsup.cli.common import ConfigFile, Json, print_json, print_table
from qsup.cli.options import flag_values, setting_flags
from qsup.cli.serve_cmd import HTTP_FLAGS, WORKER_FLAGS
from qsup.errors import QsupError
from qsup.flow import describe
from qsup.scheduler import load_schedules, validate_schedules
from qsup.settings import SETTINGS, display_value, example_toml, load_config

app = typer.Typer(help="Configuration.", no_args_is_help=True)


@app.command()
@setting_flags(*WORKER_FLAGS, *HTTP_FLAGS)
def show(json: Json = False, config: ConfigFile = None, **flags: Any) -> None:
    """Every effective setting, its value and where it came from (default, file:line, env, flag).

    Takes the same setting flags as serve, to show what serve would use with them."""
    flags = flag_values(flags)
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
        for queue, limits in sorted(cfg.limits.items()):
            value = {**limits._asdict(), "rate": str(limits.rate) if limits.rate else None}
            report[f"limits.{queue}"] = {"value": value, "source": cfg.sources[f"limits.{queue}"]}
        print_json(report)
        return
    schedule_row = (
        "schedules",
        ",".join(s.name for s in schedules),
        cfg.sources.get("schedules", "default"),
    )
    limit_rows = [
        (f"limits.{queue}", describe(limits), cfg.sources[f"limits.{queue}"])
        for queue, limits in sorted(cfg.limits.items())
    ]
    print_table(("setting", "value", "source"), [*rows, schedule_row, *limit_rows])


def _raw(name: str, value: object) -> object:
    """Typed value for JSON; secrets masked like in the table."""
    shown = display_value(name, value)
    return shown if shown == "********" else value


@app.command()
@setting_flags("imports")
def check(json: Json = False, config: ConfigFile = None, **flags: Any) -> None:
    """Validate the configuration as serve does at start (file, environment, the modules of
    `imports`, schedules and their tasks, worker_init and middleware); exit 2 naming the
    problem."""
    from qsup.server import check_hooks

    try:
        cfg = load_config(flag_values(flags), config_file=config)
        schedules = load_schedules(cfg)
        check_hooks(cfg)
    except QsupError as exc:
        if json:  # scripts read stdout; the one line on stderr and the exit code stay
            print_json(
                {"ok": False, "error": " ".join(str(exc).split()), "exit_code": exc.exit_code}
            )
        raise
    if json:
        print_json({"ok": True, "schedules": [s.name for s in schedules]})
    else:
        typer.echo(f"configuration ok ({len(schedules)} schedule(s))")


@app.command()
def example() -> None:
    """Print a commented config file with every key at its default (config/queue.toml)."""
    typer.echo(example_toml(), nl=False)
