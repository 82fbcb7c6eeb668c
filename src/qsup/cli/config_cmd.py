"""``qsup config show``."""

from __future__ import annotations

import typer

from qsup.cli.common import ConfigFile, Json, print_json
from qsup.settings import SETTINGS, display_value, load_config

app = typer.Typer(help="Configuration.", no_args_is_help=True)


@app.command()
def show(json: Json = False, config: ConfigFile = None) -> None:
    """Every effective setting, its value and where it came from."""
    cfg = load_config({}, config_file=config)
    rows = [(f.name, display_value(f.name, getattr(cfg, f.name)), cfg.sources[f.name])
            for f in SETTINGS]
    if json:
        print_json({name: {"value": value, "source": source} for name, value, source in rows})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("setting", "value", "source")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
