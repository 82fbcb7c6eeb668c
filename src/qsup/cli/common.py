"""Options and helpers shared by the command modules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import psycopg
import typer

from qsup import repo
from qsup.db.connect import connect, resolve_url
from qsup.db.migrate import migrate
from qsup.errors import TaskNotFound
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
    with connect(resolve_url(config)) as conn:
        migrate(conn)
        yield conn


def resolve_task_id(conn: psycopg.Connection[Any], text: str) -> uuid.UUID:
    """A full id, or a unique prefix of one (like git's short hashes)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    prefix = text.lower()
    if len(prefix) < 4 or any(c not in "0123456789abcdef-" for c in prefix):
        raise TaskNotFound(f"{text!r} is not a task id or an id prefix of 4+ hex digits")
    found = repo.find_task_ids_by_prefix(conn, prefix)
    if not found:
        raise TaskNotFound(f"no task id starts with {text!r}")
    if len(found) > 1:
        raise TaskNotFound(f"{text!r} matches several tasks; give more digits")
    return found[0]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=_default, indent=2, sort_keys=True))
