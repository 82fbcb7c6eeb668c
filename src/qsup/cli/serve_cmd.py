"""``qsup serve``: the supervisor (and, unless --no-http, the HTTP side)."""

from __future__ import annotations

from typing import Annotated

import typer

from qsup.cli.common import ConfigFile, DatabaseUrl, settings
from qsup.settings import load_config

Workers = Annotated[
    int | None,
    typer.Option(
        "--workers", "-w", help="Most worker processes (default: CPU count; QUEUE_MAX_WORKERS)."
    ),
]
MinWorkers = Annotated[
    int | None,
    typer.Option("--min-workers", help="Fewest worker processes kept while idle (default 1)."),
]
Queues = Annotated[
    str | None, typer.Option("--queues", help="Comma-separated queues to take (default: all).")
]
Imports = Annotated[
    list[str] | None,
    typer.Option(
        "--import", help="Module with tasks to import before forking workers (repeatable)."
    ),
]


def serve(
    workers: Workers = None,
    min_workers: MinWorkers = None,
    queues: Queues = None,
    imports: Imports = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Run workers only.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="HTTP bind address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port.")] = None,
    app: Annotated[
        str | None,
        typer.Option("--app", help="Your ASGI app (module:attr) served beside qsup's routes."),
    ] = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the supervisor: claim tasks and run them in worker processes."""
    start(
        config,
        database_url=database_url,
        max_workers=workers,
        min_workers=min_workers,
        queues=queues,
        imports=imports or None,
        http=False if no_http else None,
        host=host,
        port=port,
        app=app,
    )


def start(config_file: str | None, **flags: object) -> None:
    from qsup.server import run_server

    cfg = settings(config_file, **flags)
    raise typer.Exit(run_server(cfg, lambda: load_config(flags, config_file=config_file)))
