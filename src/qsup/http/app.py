"""The Starlette application: health, metrics, JSON API, dashboard; optionally the user's app.

``create_app(config, url)`` owns a small psycopg pool (at most two connections) opened by the
app's lifespan. With ``config.app`` set (``module:attr``), qsup's routes move under
``config.http_prefix`` (default ``/qsup``: ``/qsup/health/queue``, ``/qsup/metrics``,
``/qsup/api/...``, ``/qsup/``) and every other path goes to the user's app, whose lifespan
(Starlette/FastAPI) runs inside qsup's.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from qsup.db.connect import one_line
from qsup.errors import ConfigError
from qsup.http import (
    admin_routes,
    dashboard,
    enqueue,
    openapi,
    routes,
    series_routes,
    workflow_routes,
)
from qsup.http.auth import BearerToken, reads_guarded
from qsup.http.backend import Backend
from qsup.http.common import JSON, error
from qsup.http.metrics import make_registry, metrics_endpoint
from qsup.settings import Config


class TaskIdConvertor(StringConvertor):
    """A path segment naming a task (checked by the handler); never ``clear``, the action
    beside it, so ``GET /api/tasks/clear`` is a 405 rather than a task lookup."""

    regex = "(?!clear$)[^/]+"


register_url_convertor("task_id", TaskIdConvertor())


@dataclass(frozen=True)
class Api:
    """One path of the route table: its handler and, by method, its OpenAPI operation."""

    path: str
    endpoint: Callable[[Request], Any]
    operations: dict[str, openapi.Operation]
    open: bool = False  # no data behind it: reachable even with protect_reads

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it (``{task_id}``, without the convertor)."""
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


TASK = "/api/tasks/{task_id:task_id}"
ROUTE_TABLE = (
    Api("/", dashboard.index, {"get": openapi.PAGE}, open=True),
    Api("/livez", routes.livez, {"get": openapi.LIVEZ}, open=True),
    Api("/health/queue", routes.health_queue, {"get": openapi.HEALTH_QUEUE}, open=True),
    Api("/metrics", metrics_endpoint, {"get": openapi.METRICS}),
    Api("/api/tasks", enqueue.tasks_endpoint, {"get": openapi.LIST_TASKS, "post": openapi.ENQUEUE}),
    Api("/api/tasks/clear", admin_routes.clear_tasks, {"post": openapi.CLEAR}),
    Api(TASK, routes.get_task, {"get": openapi.GET_TASK}),
    Api(f"{TASK}/logs", routes.task_logs, {"get": openapi.TASK_LOGS}),
    Api(f"{TASK}/retry", admin_routes.retry_task, {"post": openapi.RETRY}),
    Api(f"{TASK}/cancel", admin_routes.cancel_task, {"post": openapi.CANCEL}),
    Api(f"{TASK}/stack", admin_routes.task_stack, {"get": openapi.STACK}),
    Api("/api/workflows/{workflow_id}", workflow_routes.get_workflow, {"get": openapi.WORKFLOW}),
    Api(
        "/api/workflows/{workflow_id}/cancel",
        workflow_routes.cancel_workflow,
        {"post": openapi.WORKFLOW_CANCEL},
    ),  # fmt: skip
    Api("/api/stats", routes.stats_endpoint, {"get": openapi.STATS}),
    Api("/api/servers", routes.servers, {"get": openapi.SERVERS}),
    Api("/api/series", series_routes.series_endpoint, {"get": openapi.SERIES}),
    Api("/api/schedules", routes.schedules, {"get": openapi.SCHEDULES}),
    Api("/api/schedules/{name}/pause", admin_routes.pause_schedule, {"post": openapi.PAUSE}),
    Api("/api/schedules/{name}/resume", admin_routes.resume_schedule, {"post": openapi.RESUME}),
    Api("/api/schedules/{name}/run", admin_routes.run_schedule, {"post": openapi.RUN}),
    Api("/api/queues/{name}/pause", admin_routes.pause_queue, {"post": openapi.PAUSE_QUEUE}),
    Api("/api/queues/{name}/resume", admin_routes.resume_queue, {"post": openapi.RESUME_QUEUE}),
    Api("/api/openapi.json", openapi.openapi_endpoint, {"get": openapi.OPENAPI}),
)
OPENAPI = openapi.document({api.template: api.operations for api in ROUTE_TABLE})


def qsup_routes(protect_reads: bool) -> list[BaseRoute]:
    """The table's routes and the dashboard's files; with ``protect_reads`` every route but
    the open ones behind the token (the page and its files hold no data; the page sends the
    token it is given with its API calls)."""
    table: list[BaseRoute] = []
    for api in ROUTE_TABLE:
        route = Route(api.path, api.endpoint, methods=[m.upper() for m in api.operations])
        if protect_reads and not api.open:
            route.app = reads_guarded(route.app)
        table.append(route)
    table.append(Mount("/static", app=dashboard.static_files(), name="static"))
    return table


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _db_down(request: Request, exc: Exception) -> Response:
    return error(503, f"database unavailable: {one_line(exc, type(exc).__name__)}")


async def _bad_data(request: Request, exc: Exception) -> Response:
    return error(400, f"invalid input: {str(exc).splitlines()[0] if str(exc) else 'rejected'}")


async def _internal(request: Request, exc: Exception) -> Response:
    return error(500, "internal error")


EXCEPTION_HANDLERS: Any = {
    HTTPException: _http_error,
    psycopg.OperationalError: _db_down,
    PoolTimeout: _db_down,
    psycopg.DataError: _bad_data,
    Exception: _internal,
}


def load_user_app(spec: str) -> ASGIApp:
    """Import ``module:attr``; a bad value is a configuration error (exit 2)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"app: invalid value {spec!r}: expected module:attr")
    try:
        app: ASGIApp = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        hint = ' (pip install "qsup[fastapi]")' if getattr(exc, "name", "") == "fastapi" else ""
        raise ConfigError(f"app: cannot load {spec!r}: {type(exc).__name__}: {exc}{hint}") from None
    return app


def create_app(config: Config, url: str) -> Starlette:
    """qsup's HTTP app; with ``config.app`` set, the user's app served beside it."""
    backend = Backend(config, url)
    user_app = load_user_app(config.app) if config.app else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        backend.open()
        try:
            user_lifespan = getattr(getattr(user_app, "router", None), "lifespan_context", None)
            if user_lifespan is not None:
                async with user_lifespan(user_app):
                    yield
            else:
                yield
        finally:
            backend.close()

    inner = Starlette(
        routes=qsup_routes(config.protect_reads),
        middleware=[Middleware(AuthenticationMiddleware, backend=BearerToken(config.admin_token))],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    inner.state.qsup = backend
    inner.state.metrics = make_registry(backend)
    inner.state.openapi = OPENAPI
    if user_app is None:
        inner.router.lifespan_context = lifespan
        return inner
    prefix = config.http_prefix
    outer = Starlette(
        routes=[
            Route(prefix, lambda request: RedirectResponse(f"{prefix}/")),
            Mount(prefix, app=inner),
            Mount("/", app=user_app),
        ],
        lifespan=lifespan,
    )
    outer.state.qsup = backend
    return outer
