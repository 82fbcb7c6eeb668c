"""``qsup db migrate|url``."""

from __future__ import annotations

import typer

from qsup.cli.common import ConfigFile, DatabaseUrl, settings
from qsup.db.connect import connect, resolve_url
from qsup.db.migrate import migrate as apply_migrations

app = typer.Typer(help="Database schema and location.", no_args_is_help=True)


@app.command()
def migrate(config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the schema (serve does this by itself)."""
    cfg = settings(config, database_url=database_url)
    with connect(resolve_url(cfg)) as conn:
        applied = apply_migrations(conn)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@app.command()
def url(config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Print the database URL in use (starts the embedded server if that is the one)."""
    typer.echo(resolve_url(settings(config, database_url=database_url)))
