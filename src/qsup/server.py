"""``qsup serve`` without the CLI: import the task modules, check the schedules, migrate, run
the arbiter."""

from __future__ import annotations

from collections.abc import Callable

from qsup import middleware
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


def check_hooks(config: Config) -> Config:
    """worker_init and the middleware must load in the supervisor (at start and on SIGHUP), or
    no worker could boot: a ConfigError here instead."""
    check_worker_init(config)
    middleware.chain(config)
    return config


def with_django(config: Config) -> Config:
    """With a Django settings module, Django set up (Django is imported only then)."""
    if config.django is None:
        return config
    from qsup.django.runtime import setup

    return setup(config)


def run_server(config: Config, reload: Callable[[], Config]) -> int:
    """Run a supervisor until it is told to stop; returns the exit code. ``reload`` reads the
    configuration again (SIGHUP)."""
    config = with_django(config)  # before the task modules are imported
    schedules = load_schedules(config)  # a bad schedule is exit 2 before anything starts
    check_hooks(config)  # after load_schedules imported the task modules

    def reload_checked() -> Config:
        return check_hooks(with_django(reload()))

    url = resolve_url(config)
    with connect(url) as conn:
        migrate(conn)
    if not config.http:
        return Arbiter(config, url, reload_checked, schedules).run()
    from qsup.http.process import HttpKeeper

    http = HttpKeeper(config, url)  # first forked before the arbiter exists
    try:
        return Arbiter(config, url, reload_checked, schedules, http).run()
    finally:
        http.stop()
