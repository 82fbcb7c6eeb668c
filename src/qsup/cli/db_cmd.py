"""``qsup db migrate|url|start|stop|status``."""

from __future__ import annotations

import sys

import typer

from qsup.cli.common import ConfigFile, DatabaseUrl, Json, print_json, settings
from qsup.db import embedded
from qsup.db.connect import connect, describe, resolve_url
from qsup.db.migrate import migrate as apply_migrations
from qsup.db.migrate import up_to_date
from qsup.errors import ConfigError, QsupError
from qsup.settings import Config

app = typer.Typer(help="Database schema and location; the embedded server.", no_args_is_help=True)


@app.command()
def migrate(config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the schema (serve does this by itself)."""
    cfg = settings(config, database_url=database_url)
    with connect(resolve_url(cfg)) as conn:
        current = up_to_date(conn)
        applied = apply_migrations(conn)
    if applied:
        typer.echo(f"applied: {', '.join(applied)}")
    else:
        typer.echo("schema is up to date" + ("" if current else "; database functions applied"))


@app.command()
def url(config: ConfigFile = None, database_url: DatabaseUrl = None, json: Json = False) -> None:
    """Print the database URL in use (starts the embedded server if that is the one)."""
    cfg = settings(config, database_url=database_url)
    found = resolve_url(cfg)
    stays = True if cfg.database_url else embedded.keeps_running_after_exit(cfg.data_dir)
    if json:
        print_json({"url": found, "embedded": not cfg.database_url, "stays_running": stays})
    else:
        typer.echo(found)
    if not stays:
        print(
            "qsup: note: the embedded server stops when this command exits (nothing else uses"
            " it); run `qsup db start` first to keep it running until `qsup db stop`",
            file=sys.stderr,
        )


def _embedded_only(cfg: Config, command: str) -> None:
    if cfg.database_url:
        source = cfg.sources.get("database_url", "configuration")
        raise ConfigError(
            f"db {command}: database_url is set ({source}: {describe(cfg.database_url)}),"
            " so there is no embedded server to manage"
        )


@app.command()
def start(config: ConfigFile = None) -> None:
    """Start the embedded server and keep it running until `qsup db stop`."""
    cfg = settings(config)
    _embedded_only(cfg, "start")
    found = embedded.start(cfg.data_dir)
    typer.echo(f"embedded PostgreSQL running until `qsup db stop`: {found}")


@app.command()
def stop(config: ConfigFile = None) -> None:
    """Stop the embedded server, or let it stop when the last qsup process using it exits."""
    cfg = settings(config)
    _embedded_only(cfg, "stop")
    was_running, users = embedded.stop(cfg.data_dir)
    if users:
        pids = ", ".join(map(str, users))
        raise QsupError(f"not stopped: qsup processes {pids} use it; it stops when the last exits")
    typer.echo("stopped" if was_running else "not running")


@app.command()
def status(config: ConfigFile = None, json: Json = False) -> None:
    """Whether the embedded server runs: URL, data dir, pid, who uses it (starts nothing)."""
    cfg = settings(config)
    _embedded_only(cfg, "status")
    st = embedded.status(cfg.data_dir)
    if json:
        print_json(st.as_dict())
        return
    typer.echo(f"running:  {'yes' if st.running else 'no'}")
    if st.running:
        typer.echo(f"url:      {st.url}\npid:      {st.pid}")
        kept = "until `qsup db stop` (db start)" if st.kept else "while qsup processes use it"
        typer.echo(f"kept:     {kept}")
        orphan = "none (its users were killed; `qsup db stop` stops it)"
        typer.echo(f"users:    {', '.join(map(str, st.users)) or orphan}")
    typer.echo(f"data dir: {st.data_dir}")
