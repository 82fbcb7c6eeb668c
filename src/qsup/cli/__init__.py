"""The ``qsup`` command: thin typer modules that parse, load settings and call the core."""

from __future__ import annotations

import importlib
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


# Each command's module by command name, in the order ``qsup --help`` lists them. Only the
# command being run is imported and built: building all of them took 30-50 ms of every start,
# ``qsup serve`` included. Help, no command and unknown commands see them all.
COMMANDS = {
    "serve": "serve_cmd",
    "enqueue": "enqueue_cmd",
    "queue": "queue_cmd",
    "task": "task_cmd",
    "workflow": "workflow_cmd",
    "db": "db_cmd",
    "config": "config_cmd",
    "schedule": "schedule_cmd",
}


def register(args: list[str]) -> None:
    """Add the command that ``args`` name to ``app``, or every command when they name none."""
    named = next((arg for arg in args if not arg.startswith("-")), None)
    for name in [named] if named in COMMANDS else list(COMMANDS):
        module = importlib.import_module(f"qsup.cli.{COMMANDS[name]}")
        group = getattr(module, "app", None)
        if isinstance(group, typer.Typer):
            app.add_typer(group, name=name)
        else:
            app.command(name)(getattr(module, name))


def main() -> None:
    """Console entry point: qsup errors become one line on stderr and their exit code."""
    register(sys.argv[1:])
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
