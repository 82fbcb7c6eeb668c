"""``qsup serve`` without the CLI: import the task modules, check the schedules, migrate, run
the arbiter."""

from __future__ import annotations

from collections.abc import Callable

from qsup.db.connect import connect, resolve_url
from qsup.db.migrate import migrate
from qsup.encoding import resolve_task
from qsup.errors import ConfigError, TaskDefinitionError
from qsup.scheduler import load_schedules
from qsup.settings import Config
from qsup.supervisor.arbiter import Arbiter


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
    """Run a supervisor until it is told to stop; returns the exit code. ``reload`` reads the
    configuration again (SIGHUP)."""
    schedules = load_schedules(config)  # a bad schedule is exit 2 before anything starts
    check_worker_init(config)  # after load_schedules imported the task modules
    url = resolve_url(config)
    with connect(url) as conn:
        migrate(conn)
    if not config.http:
        return Arbiter(config, url, reload, schedules).run()
    from qsup.http.process import HttpKeeper

    http = HttpKeeper(config, url)  # first forked before the arbiter exists
    try:
        return Arbiter(config, url, reload, schedules, http).run()
    finally:
        http.stop()
