"""The ``qsup`` command: thin typer modules that parse, load settings and call the core."""

from __future__ import annotations

import sys

import typer

try:  # recent typer vendors click
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover
    from click import exceptions as click  # type: ignore[no-redef]

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
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """qsup: a PostgreSQL-backed task queue with a multiprocess supervisor."""


def _register() -> None:
    from qsup.cli import (
        config_cmd,
        db_cmd,
        enqueue_cmd,
        queue_cmd,
        schedule_cmd,
        serve_cmd,
        task_cmd,
    )

    app.command("serve")(serve_cmd.serve)
    app.command("enqueue")(enqueue_cmd.enqueue)
    app.add_typer(queue_cmd.app, name="queue")
    app.add_typer(task_cmd.app, name="task")
    app.add_typer(db_cmd.app, name="db")
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(schedule_cmd.app, name="schedule")


_register()


def main() -> None:
    """Console entry point: qsup errors become one line on stderr and their exit code."""
    try:
        code = app(standalone_mode=False)
    except QsupError as exc:
        _fail(str(exc), exc.exit_code)
    except click.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help()) if exc.ctx else None
        sys.exit(2)
    except click.UsageError as exc:
        path = exc.ctx.command_path.split(" ", 1)[1:] if exc.ctx else []
        where = f"{path[0]}: " if path else ""
        _fail(f"{where}{exc.format_message()}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    """One line on stderr (usage errors included: no usage block, no traceback), then exit."""
    print(f"qsup: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)
