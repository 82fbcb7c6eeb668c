"""Options and helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import psycopg
import typer

from qsup.db.connect import connect, prepare_threshold, resolve_url
from qsup.db.migrate import migrate
from qsup.log import setup_logging
from qsup.settings import Config, load_config

ConfigFile = Annotated[
    str | None,
    typer.Option(
        "--config", help="TOML config file (default: $QSUP_CONFIG, else ./config/queue.toml)."
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL (default: $QUEUE_DATABASE_URL, $DATABASE_URL,"
        " else the embedded server).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def settings(config_file: str | None, **flags: Any) -> Config:
    config = load_config(flags, config_file=config_file)
    setup_logging(config.log_level, config.log_format)
    return config


@contextmanager
def database(config: Config) -> Iterator[psycopg.Connection[Any]]:
    """A migrated connection to the configured database."""
    with connect(resolve_url(config), prepare_threshold=prepare_threshold(config)) as conn:
        migrate(conn)
        yield conn


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=_default, indent=2, sort_keys=True))


def plain_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None
) -> list[str]:
    """Aligned columns for pipes and files: every value in full (a multi-line value, such as
    a traceback, takes several lines), nothing wrapped or cut."""
    cells = [[value.splitlines() or [""] for value in row] for row in [columns, *rows]]
    widths = [max(len(line) for row in cells for line in row[i]) for i in range(len(columns))]
    lines = [title] if title else []
    for row in cells:
        for k in range(max(len(value) for value in row)):
            parts = [
                (v[k] if k < len(v) else "").ljust(w) for v, w in zip(row, widths, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
    return lines


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None
) -> None:
    """A rich table on a terminal; :func:`plain_table` when stdout is piped or redirected,
    where rich would cut values to fit 80 columns."""
    if not sys.stdout.isatty():
        typer.echo("\n".join(plain_table(columns, rows, title)))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, title=title)
    for column in table.columns:
        column.overflow = "fold"  # long values wrap onto more lines, never end in an ellipsis
    for row in rows:
        table.add_row(*(Text(value) for value in row))  # values are text, never rich markup
    Console().print(table)
