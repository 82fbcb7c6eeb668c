"""A real ``qsup serve`` subprocess, the one way the tests and the chaos harness start servers.

No pytest here: ``scripts/chaos.py`` imports this module too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
READY = "started (server id"
# Settings a developer's shell may hold that would change what a test's server does.
FOREIGN_ENV = ("QSUP_CONFIG", "QUEUE_QUEUES", "QUEUE_MAX_WORKERS", "QUEUE_IMPORTS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def is_worker(proc: psutil.Process) -> bool:
    try:
        return "qsup: worker" in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


class Server:
    """``qsup serve --import <imports> <args>`` with ``env``, its output in ``log``; with
    ``http`` on a free port (``url()``), else ``--no-http``. Every child it is seen with is
    remembered, and ``stop()`` ends only those and the server itself, by pid."""

    def __init__(
        self,
        db_url: str,
        args: Sequence[str],
        env: dict[str, str],
        log: Path,
        *,
        http: bool = False,
        imports: Sequence[str] = ("tests.tasks", "tests.edge_tasks"),
        new_session: bool = False,
    ) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.port = free_port() if http else None
        full_env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        full_env.update({"QUEUE_DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", **env})
        listen = ["--port", str(self.port)] if http else ["--no-http"]
        modules = [arg for name in imports for arg in ("--import", name)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qsup", "serve", *listen, *modules, *args],
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        self.pid = self.proc.pid
        self.seen: dict[int, psutil.Process] = {}  # every child ever seen, by pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        """Started (the log says so) and, with HTTP, answering ``/livez``."""
        if READY not in self.output():
            return False
        if self.port is None:
            return True
        try:
            with urllib.request.urlopen(self.url("/livez"), timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float = 30) -> None:
        """Until ready; fails with the output when the server exits first."""
        wait_for(lambda: self.ready() or not self.running(), timeout, what="the server to start")
        assert self.running(), f"qsup serve exited {self.proc.returncode}:\n{self.output()}"

    def url(self, path: str) -> str:
        assert self.port is not None, "started without HTTP"
        return f"http://127.0.0.1:{self.port}{path}"

    def children(self) -> list[psutil.Process]:
        return self._remember(self._children())

    def workers(self) -> list[psutil.Process]:
        return self._remember([c for c in self._children() if is_worker(c)])

    def _children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def _remember(self, found: list[psutil.Process]) -> list[psutil.Process]:
        for child in found:
            self.seen.setdefault(child.pid, child)
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

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout``), then SIGKILL any child left over."""
        self.children()
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for child in self.seen.values():  # psutil refuses a pid reused by another process
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.close()
        return self.proc.returncode

    def close(self) -> None:
        if not self.log.closed:
            self.log.close()
