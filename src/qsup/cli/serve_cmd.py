"""``qsup serve``: the supervisor (and, unless --no-http, the HTTP side)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from qsup.cli.common import ConfigFile, settings
from qsup.cli.options import flag_values, setting_flags
from qsup.settings import load_config

# what serve takes; `queue start` takes them but the HTTP ones
WORKER_FLAGS = ("max_workers", "min_workers", "queues", "imports", "database_url", "django")
HTTP_FLAGS = ("host", "port", "app")


@setting_flags(*WORKER_FLAGS, *HTTP_FLAGS)
def serve(
    no_http: Annotated[bool, typer.Option("--no-http", help="Run workers only.")] = False,
    config: ConfigFile = None,
    **flags: Any,
) -> None:
    """Run the supervisor: claim tasks and run them in worker processes."""
    start(config, http=False if no_http else None, **flags)


def start(config_file: str | None, **flags: Any) -> None:
    from qsup.server import run_server

    given = flag_values(flags)
    cfg = settings(config_file, **given)
    raise typer.Exit(run_server(cfg, lambda: load_config(given, config_file=config_file)))
