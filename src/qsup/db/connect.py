"""Where the database is, and connections to it that fail with one clear line."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from qsup.db.embedded import embedded_url
from qsup.errors import DatabaseUnreachable
from qsup.settings import Config

CONNECT_TIMEOUT = 5


def resolve_url(config: Config) -> str:
    """``--database-url`` > QUEUE_DATABASE_URL > DATABASE_URL > TOML > embedded server."""
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


def connect(url: str, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection, or DatabaseUnreachable naming the host that was tried."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT, **kwargs)
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnreachable(f"invalid database URL ({exc})".splitlines()[0]) from None
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
        raise DatabaseUnreachable(f"cannot reach PostgreSQL at {describe(url)}: {reason}") from None


async def connect_async(url: str, *, autocommit: bool = True) -> psycopg.AsyncConnection[Any]:
    """The async twin of :func:`connect`, same errors."""
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT
        )
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnreachable(f"invalid database URL ({exc})".splitlines()[0]) from None
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
        raise DatabaseUnreachable(f"cannot reach PostgreSQL at {describe(url)}: {reason}") from None
