"""The ``qsup`` command: thin typer modules that parse, load settings and call the core."""

from __future__ import annotations

import sys

import typer

from qsup import __version__
from qsup.errors import QsupError

app = typer.Typer(
    help="qsup: a PostgreSQL-backed task queue with a multiprocess supervisor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qsup {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """qsup: a PostgreSQL-backed task queue with a multiprocess supervisor."""


def _register() -> None:
    from qsup.cli import config_cmd, db_cmd, enqueue_cmd, queue_cmd, serve_cmd, task_cmd

    app.command("serve")(serve_cmd.serve)
    app.command("enqueue")(enqueue_cmd.enqueue)
    app.add_typer(queue_cmd.app, name="queue")
    app.add_typer(task_cmd.app, name="task")
    app.add_typer(db_cmd.app, name="db")
    app.add_typer(config_cmd.app, name="config")


_register()


def main() -> None:
    """Console entry point: qsup errors become one line on stderr and their exit code."""
    try:
        app()
    except QsupError as exc:
        print(f"qsup: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
