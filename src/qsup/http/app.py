"""The Starlette application: health, metrics, JSON API, dashboard; optionally the user's app.

``create_app(config, url)`` owns a small psycopg pool (at most two connections) opened by the
app's lifespan. With ``config.app`` set (``module:attr``), qsup's routes move under
``config.http_prefix`` (default ``/qsup``: ``/qsup/health/queue``, ``/qsup/metrics``,
``/qsup/api/...``, ``/qsup/``) and every other path goes to the user's app, whose lifespan
(Starlette/FastAPI) runs inside qsup's.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import importlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from qsup.db.connect import one_line
from qsup.errors import ConfigError
from qsup.settings import Config

POOL_TIMEOUT = 5.0
POOL_MAX_IDLE = 60.0  # seconds before an unused connection is closed: an idle server holds
# only the supervisor's three, and a request after a quiet minute pays one connect (a few ms)


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class JSON(JSONResponse):
    """JSON that knows uuids, datetimes and decimals."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, default=_default, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")


def error(status: int, message: str, **extra: Any) -> JSON:
    return JSON({"error": message, **extra}, status_code=status)


class Backend:
    """What every handler needs: the settings, the pool and the metrics registry."""

    def __init__(self, config: Config, url: str) -> None:
        self.config = config
        self.url = url
        self.pool = ConnectionPool(
            url,
            min_size=0,
            max_size=2,
            max_idle=POOL_MAX_IDLE,
            open=False,
            timeout=POOL_TIMEOUT,
            name="qsup-http",
            kwargs={
                "autocommit": True,
                "connect_timeout": 5,
                "application_name": f"qsup-http-{os.getpid()}",
            },
            check=ConnectionPool.check_connection,
        )
        from qsup.http.metrics import make_registry

        self.registry = make_registry(self)

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection(timeout=timeout) as conn:
            yield conn

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close(timeout=2)


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.qsup
    return backend


DISABLED = "admin actions are disabled: set QSUP_ADMIN_TOKEN to enable them"
READS_DISABLED = (
    "reads are protected (QSUP_PROTECT_READS) but no QSUP_ADMIN_TOKEN is set: set one to read"
)


def require_token(request: Request, refused: str = DISABLED) -> Backend:
    """The backend, if the request carries the admin bearer token (compared in constant
    time); 403 with ``refused`` when no token is configured, 401 when it is missing or wrong."""
    backend = backend_of(request)
    token = backend.config.admin_token
    if not token:
        raise HTTPException(403, refused)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    ):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return backend


OPEN_PATHS = frozenset({"/livez", "/health/queue", "/", "/static"})  # no data behind these


def _token_required(inner: ASGIApp) -> ASGIApp:
    """``inner`` behind the admin token (``protect_reads``)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            require_token(Request(scope, receive), READS_DISABLED)
        await inner(scope, receive, send)

    return guarded


def protect_reads(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Put every route but :data:`OPEN_PATHS` behind the token (the page and its static
    files hold no data; the page sends the token it is given with its API calls)."""
    guarded: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route | Mount) and route.path not in OPEN_PATHS:
            route = copy.copy(route)  # the module's ROUTES are shared by every app
            route.app = _token_required(route.app)
        guarded.append(route)
    return guarded


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


def qsup_routes() -> list[BaseRoute]:
    from qsup.http import admin_routes, dashboard, enqueue, routes
    from qsup.http.metrics import metrics_endpoint

    # Mutations first: for a method no route allows, Starlette's 405 names the methods of the
    # first route whose path matches, and /api/tasks/clear also matches /api/tasks/{task_id}.
    return [
        *enqueue.ROUTES,
        *admin_routes.ROUTES,
        *routes.ROUTES,
        Route("/metrics", metrics_endpoint),
        *dashboard.ROUTES,
    ]


def load_user_app(spec: str) -> ASGIApp:
    """Import ``module:attr``; a bad value is a configuration error (exit 2)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"app: invalid value {spec!r}: expected module:attr")
    try:
        app: ASGIApp = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"app: cannot load {spec!r}: {type(exc).__name__}: {exc}") from None
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

    routes = qsup_routes()
    if config.protect_reads:
        routes = protect_reads(routes)
    inner = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    inner.state.qsup = backend
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
