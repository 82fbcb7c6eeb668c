"""Shared fixtures: a real PostgreSQL (QSUP_TEST_DATABASE_URL, else embedded), one database per
pytest-xdist worker, tables emptied before each test, and real ``qsup serve`` processes."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from qsup import repo
from qsup.db.migrate import migrate
from tests.servers import Server
from tests.servers import wait_for as wait_for  # the tests import it from here


def _has_django_tasks() -> bool:
    try:
        return importlib.util.find_spec("django.tasks") is not None
    except ModuleNotFoundError:
        return False


# tests/django need Django 6 (Python 3.12+): scripts/django_env.sh runs them in their own venv
collect_ignore = [] if _has_django_tasks() else ["django"]

TABLES = (
    "queued_task_logs, queued_task_dependencies, queued_tasks, queued_task_workers,"
    " queued_task_schedules, queued_task_queues, queued_task_starts, queued_task_minutes"
)


def _server_url() -> str:
    url = os.environ.get("QSUP_TEST_DATABASE_URL")
    if url:
        return url
    from qsup.db.embedded import embedded_url

    # One embedded server for every xdist worker and every run (reused: no initdb each time).
    return embedded_url(os.path.join(tempfile.gettempdir(), f"qsup-test-pg-{os.getuid()}"))


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str, worker_id: str, testrun_uid: str) -> Iterator[str]:
    """A migrated database of this run's and this xdist worker's own, dropped at the end."""
    name = f"qsup_test_{testrun_uid[:8]}_{worker_id}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(database_url: str) -> str:
    """The worker's database, emptied for this test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return database_url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def queue(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from qsup import Queue

    monkeypatch.setenv("QUEUE_DATABASE_URL", db_url)
    monkeypatch.setattr("qsup.api._default_queue", None)
    q = Queue(db_url)
    yield q
    q.close()


@pytest.fixture
def start_server(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``qsup serve --import tests.tasks --import tests.edge_tasks`` (``--no-http``
    unless ``http=True``) with extra args and env, at DEBUG; every server is stopped after the
    test."""
    started: list[Server] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        http: bool = False,
        **options: Any,  # Server's keyword options (imports=...)
    ) -> Server:
        log = tmp_path / f"serve-{len(started)}.log"
        env = {"QSUP_LOG_LEVEL": "DEBUG", **(env or {})}
        server = Server(db_url, args, env, log, http=http, **options)
        started.append(server)
        if wait_ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def one(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the one row ``sql`` returns (fails when it returns none)."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, f"no row from {sql!r}"
    return row[0]


def task_row(conn: psycopg.Connection[Any], task_id: Any) -> dict[str, Any]:
    """The task's row (``repo.get_task``), which the test knows exists."""
    row = repo.get_task(conn, task_id)
    assert row is not None, f"no task {task_id}"
    return row


def task_states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("SELECT state, count(*) FROM queued_tasks GROUP BY state").fetchall())


warnings.filterwarnings("ignore", category=DeprecationWarning, module="multiprocess")
