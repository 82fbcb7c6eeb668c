"""Where the database is, and connections to it that fail with one clear line."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from qsup.db.embedded import embedded_url
from qsup.errors import ConfigError, DatabaseUnreachable, QsupError
from qsup.settings import Config

CONNECT_TIMEOUT = 5


_PASSWORD = re.compile(r"(://[^:/@?]*:)[^@/?]*@|(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def redact(text: str) -> str:
    """``text`` with the passwords of the URLs or ``key=value`` strings in it masked."""
    return _PASSWORD.sub(lambda m: f"{m[1]}***@" if m[1] else f"{m[2]}***", text)


def url_problem(url: str) -> str | None:
    """Why libpq cannot use ``url`` at all (as opposed to not reaching its server), or None."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        return str(exc).strip().splitlines()[0]
    for port in str(info.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return f"port {port!r} is not a number from 1 to 65535"
    return None


def check_urls(config: Config) -> None:
    """ConfigError naming the setting, its (masked) value and its source for a malformed URL."""
    for name in ("database_url", "listen_database_url"):
        url = getattr(config, name)
        problem = url_problem(url) if url else None
        if problem:
            raise ConfigError(
                f"{name}: invalid PostgreSQL URL {redact(url)!r} from"
                f" {config.sources.get(name, 'default')}: {redact(problem)}"
            )


def prepare_threshold(config: Config, *, at_once: bool = False) -> int | None:
    """psycopg's ``prepare_threshold`` for connections to ``database_url``: None (never
    prepare) when a pooler would hand our prepared statements' names to another session; 0
    (prepare at first use) for the supervisor's few statements run thousands of times; else
    psycopg's default of 5."""
    if not config.prepared_statements:
        return None
    return 0 if at_once else 5


def resolve_url(config: Config) -> str:
    """``--database-url`` > QUEUE_DATABASE_URL > DATABASE_URL > TOML > embedded server."""
    check_urls(config)
    return config.database_url or embedded_url(config.data_dir)


def describe(url: str) -> str:
    """The host (or socket dir) and database of a URL, without the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable URL"
    host = info.get("host") or "local socket"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{host}{port}/{info.get('dbname', '')}"


def describe_connection(connection: Any, url: str | None) -> str:
    """The host of a caller's connection, else of ``url`` (never resolved here: that may
    connect)."""
    try:
        return describe(connection.info.dsn) if connection is not None else describe(url or "")
    except (psycopg.Error, AttributeError):
        return "the caller's connection"


def one_line(exc: BaseException, default: str = "no answer") -> str:
    """libpq's message on one line: it wraps a sentence over several lines, the last of which
    alone ("before or while processing the request.") tells an operator nothing."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or default


def lost(where: str, exc: BaseException) -> DatabaseUnreachable:
    """A connection that worked and broke: ``where`` is ``describe(url)``."""
    return DatabaseUnreachable(f"lost PostgreSQL at {where}: {one_line(exc, 'connection closed')}")


def _unreachable(url: str, exc: psycopg.Error) -> QsupError:
    """One line naming the host that was tried and why it failed (or why the URL is bad)."""
    problem = url_problem(url)
    if problem:
        return ConfigError(f"invalid PostgreSQL URL {redact(url)!r}: {redact(problem)}")
    return DatabaseUnreachable(f"cannot reach PostgreSQL at {describe(url)}: {one_line(exc)}")


def connect(url: str, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection, or DatabaseUnreachable naming the host that was tried."""
    try:
        return psycopg.connect(
            url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT, **kwargs
        )
    except (psycopg.ProgrammingError, psycopg.OperationalError) as exc:
        raise _unreachable(url, exc) from None


def close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    """Close a connection that may already be broken."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass
