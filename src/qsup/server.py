"""``qsup serve`` without the CLI: migrate, import the task modules, run the arbiter."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from qsup.db.connect import connect, resolve_url
from qsup.db.migrate import migrate
from qsup.encoding import resolve_task
from qsup.errors import ConfigError, TaskDefinitionError
from qsup.settings import Config
from qsup.supervisor.arbiter import Arbiter


def import_task_modules(config: Config) -> None:
    """Import what workers will run, before forking, so they start warm."""
    if os.getcwd() not in sys.path:  # like gunicorn: the project directory is importable
        sys.path.insert(0, os.getcwd())
    for module in config.imports:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any error in user code at import time
            source = config.sources.get("imports", "default")
            raise ConfigError(
                f"imports: cannot import {module!r} ({source}): {type(exc).__name__}: {exc}"
            ) from None


def check_worker_init(config: Config) -> None:
    """The worker_init function must import in the supervisor, or no worker could boot."""
    if config.worker_init is None:
        return
    try:
        resolve_task(config.worker_init)
    except TaskDefinitionError as exc:
        source = config.sources.get("worker_init", "default")
        raise ConfigError(f"worker_init: {config.worker_init!r} ({source}): {exc}") from None


def run_server(config: Config, reload: Callable[[], Config]) -> int:
    """Run a supervisor until it is told to stop; returns the exit code."""
    url = resolve_url(config)
    with connect(url) as conn:
        migrate(conn)
    import_task_modules(config)
    check_worker_init(config)
    if not config.http:
        return Arbiter(config, url, reload).run()
    from qsup.http.process import start_http, stop_http

    http = start_http(config, url)  # forked before the arbiter exists: nothing else crosses
    try:
        return Arbiter(config, url, reload).run()
    finally:
        stop_http(http)
