"""What every handler needs: the settings and a small connection pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from starlette.requests import Request

from qsup.db.connect import prepare_threshold
from qsup.settings import Config

POOL_TIMEOUT = 5.0
POOL_MAX_IDLE = 60.0  # seconds before an unused connection is closed: an idle server holds
# only the supervisor's three, and a request after a quiet minute pays one connect (a few ms)


class Backend:
    """The settings and a psycopg pool of at most two connections, opened by the lifespan."""

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
                "prepare_threshold": prepare_threshold(config),
            },
            check=ConnectionPool.check_connection,
        )

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
