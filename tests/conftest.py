"""Shared fixtures: a real PostgreSQL (QSUP_TEST_DATABASE_URL, else embedded), one database per
pytest-xdist worker, tables emptied before each test, and real ``qsup serve`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from qsup.db.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
TABLES = (
    "queued_task_logs, queued_task_dependencies, queued_tasks, queued_task_workers,"
    " queued_task_schedules"
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


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Server:
    """A real ``qsup serve`` subprocess started by a test; stopped by pid only."""

    def __init__(self, db_url: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {
            **os.environ,
            "QUEUE_DATABASE_URL": db_url,
            "QSUP_LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        full_env.pop("QSUP_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qsup", "serve", "--no-http", "--import", "tests.tasks", *args],
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.known: set[int] = {self.pid}

    def workers(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        found = [c for c in children if _is_worker(c)]
        self.known.update(c.pid for c in found)
        return found

    def wait_workers(self, count: int, timeout: float = 20) -> list[psutil.Process]:
        return wait_for(
            lambda: len(self.workers()) == count and self.workers(),
            timeout,
            what=f"{count} workers",
        )

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.known - {self.pid}:  # only processes this test started
            try:
                proc = psutil.Process(pid)
                if _is_worker(proc):
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.log.close()


def _is_worker(proc: psutil.Process) -> bool:
    try:
        return "qsup: worker" in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


@pytest.fixture
def start_server(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``qsup serve --no-http --import tests.tasks`` with extra args and env."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, wait_ready: bool = True) -> Server:
        server = Server(db_url, list(args), env or {}, tmp_path / f"serve-{len(started)}.log")
        started.append(server)
        if wait_ready:
            wait_for(
                lambda: "started (server id" in server.output() or server.proc.poll() is not None,
                what="the server to start",
            )
            assert server.proc.poll() is None, server.output()
        return server

    yield start
    for server in started:
        server.stop()


def task_states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("SELECT state, count(*) FROM queued_tasks GROUP BY state").fetchall())


warnings.filterwarnings("ignore", category=DeprecationWarning, module="multiprocess")
