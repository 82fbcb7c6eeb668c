"""``qsup serve`` for a Django project (``--django SETTINGS`` or ``DJANGO_SETTINGS_MODULE``):
Django is set up in the supervisor, before any fork, with every app's ``tasks`` module
imported; each worker drops the database connections it inherited, and around each task does
what Django's request cycle does, so the ORM works in sync and async tasks alike."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import close_old_connections, connections, reset_queries
from django.utils.module_loading import autodiscover_modules
from psycopg import ProgrammingError
from psycopg.conninfo import make_conninfo

from qsup import middleware
from qsup.errors import ConfigError
from qsup.settings import Config

# the OPTIONS of Django's PostgreSQL backend that are not libpq parameters
DJANGO_ONLY = {"isolation_level", "server_side_binding", "assume_role", "pool", "cursor_factory"}
_abandoned: list[Any] = []  # inherited connections, kept so that no finalizer writes to them


def setup(config: Config) -> Config:
    """Set Django up (once), import the task modules, close the connections that used, and
    return ``config`` with the qsup backend's database when no database_url was given."""
    assert config.django is not None
    if not apps.ready:
        os.environ["DJANGO_SETTINGS_MODULE"] = config.django
        try:
            django.setup()
        except Exception as exc:  # the user's settings module, or an app, does not load
            raise ConfigError(f"django: {config.django!r}: {type(exc).__name__}: {exc}") from None
    _prepare_once()  # also when manage.py set Django up before us
    connections.close_all()  # nothing open to fork: each worker opens its own
    if config.database_url is None:
        config = config.replace(database_url=database_url())
    # the apps' task modules were given to the server as --import would give them: their
    # functions may run under the default allowed_task_modules (see qsup.trust)
    found = [f"{app.name}.tasks" for app in apps.get_app_configs()]
    given = [name for name in found if name in sys.modules and name not in config.imports]
    return config.replace(imports=[*config.imports, *given]) if given else config


@functools.cache
def _prepare_once() -> None:
    """The apps' task modules imported, and connections managed around each task."""
    autodiscover_modules("tasks")
    middleware.add_middleware(DjangoConnections)


def database_url(alias: str | None = None) -> str | None:
    """The URL of the database ``alias`` names; without one, of the database the qsup
    backends of TASKS use (None when there is no qsup backend)."""
    if alias is not None:
        return _alias_url(alias)
    from django.tasks import task_backends

    from qsup.django.backend import TaskBackend

    databases = {b.database for b in task_backends.all() if isinstance(b, TaskBackend)}
    found = {_alias_url(name) for name in databases}
    if len(found) > 1:
        raise ConfigError(
            f"django: the qsup backends use several databases ({', '.join(sorted(databases))}):"
            " give --database-url"
        )
    return found.pop() if found else None


def _alias_url(alias: str) -> str:
    params = connections[alias].settings_dict
    if "postgresql" not in params["ENGINE"]:
        raise ConfigError(f"django: DATABASES[{alias!r}] is not PostgreSQL ({params['ENGINE']})")
    given = {"dbname": params.get("NAME"), "user": params.get("USER"),
             "password": params.get("PASSWORD"), "host": params.get("HOST"),
             "port": params.get("PORT")}  # fmt: skip
    given |= {k: v for k, v in params.get("OPTIONS", {}).items() if k not in DJANGO_ONLY}
    kept = {k: v for k, v in given.items() if isinstance(v, str | int) and v}
    try:
        return make_conninfo("", **kept)
    except ProgrammingError as exc:
        raise ConfigError(f"django: DATABASES[{alias!r}]: {exc}") from None


class DjangoConnections:
    """Middleware added in Django mode: made in each worker after the fork, it forgets the
    connections the worker inherited (their sockets are closed already; closing them again
    could write to a reused file descriptor); around each task, like a request: stale
    connections closed before and after, the query log reset."""

    def __init__(self) -> None:
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None:
                _abandoned.append(conn.connection)
                conn.connection = None

    def around_task(self, task: Any, call: Callable[[], Any]) -> Any:
        _request_started()
        try:
            return call()
        finally:
            close_old_connections()

    async def around_task_async(self, task: Any, call: Callable[[], Awaitable[Any]]) -> Any:
        # the ORM's async calls use the thread of sync_to_async, and its connections
        await sync_to_async(_request_started)()
        try:
            return await call()
        finally:
            await sync_to_async(close_old_connections)()


def _request_started() -> None:
    reset_queries()
    close_old_connections()
