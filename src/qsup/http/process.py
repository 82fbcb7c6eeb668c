"""Run the HTTP server (uvicorn) in a child process forked from the supervisor.

The listening socket is bound in the supervisor before the fork, so a port already in use is
a configuration error at start-up (exit 2) rather than a dead child. The child owns the socket
and its own database pool, ignores the terminal's group signals (the supervisor stops it with
SIGTERM after draining) and dies with the supervisor (``PR_SET_PDEATHSIG``).

The supervisor keeps the socket: when the child dies (:class:`HttpKeeper`), its exit is logged
and a new child is forked on the same socket, at once the first time and with the workers'
start-up backoff when it keeps dying; connections meanwhile wait in the socket's backlog.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

import multiprocess
from loguru import logger
from multiprocess.connection import wait as wait_ready

from qsup.errors import ConfigError
from qsup.linux import die_with_parent
from qsup.settings import Config
from qsup.supervisor.policy import respawn_delay
from qsup.supervisor.pool import exit_label

STOP_TIMEOUT = 10.0
STABLE_AFTER = 30.0  # seconds an HTTP child must live for its death not to count as repeated


def bind(config: Config) -> socket.socket:
    """The listening socket, or a ConfigError naming the address."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    try:
        return socket.create_server((config.host, config.port), family=family, backlog=2048)
    except OSError as exc:
        # In use or privileged: the port's fault; unknown name or not this machine's: the host's.
        key = "port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "host"
        reason = (exc.strerror or str(exc)).split(" (while attempting")[0]  # create_server's
        raise ConfigError(
            f"{key}: cannot listen on {config.host}:{config.port}"
            f" ({key} from {config.sources.get(key, 'default')}): {reason}"
        ) from None


def _child_setup(parent_pid: int) -> None:
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(0)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        from setproctitle import setproctitle

        setproctitle("qsup: http")
    except ImportError:  # pragma: no cover
        pass


class _Server:
    """uvicorn's server, stopped by SIGTERM only (SIGINT goes to the supervisor)."""

    @staticmethod
    def run(config: Config, url: str, sock: socket.socket) -> None:
        import uvicorn
        import uvicorn.server

        from qsup.http.app import create_app

        uvicorn.server.HANDLED_SIGNALS = (signal.SIGTERM,)  # type: ignore[assignment]  # this process only
        app = create_app(config, url)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level=config.log_level.lower(),
                access_log=False,
                lifespan="on",
                proxy_headers=False,
                server_header=False,
            )
        )
        server.run(sockets=[sock])


def _child_main(config: Config, url: str, sock: socket.socket, parent_pid: int) -> None:
    _child_setup(parent_pid)
    code = 1
    try:
        _Server.run(config, url, sock)
        code = 0
    except BaseException:  # noqa: BLE001 - report anything, then exit non-zero
        traceback.print_exc()
    finally:  # no finalizer may touch the supervisor's connections it inherited
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork(config: Config, url: str, sock: socket.socket) -> Any:
    ctx = multiprocess.get_context("fork")
    proc = ctx.Process(
        target=_child_main, args=(config, url, sock, os.getpid()), name="qsup-http", daemon=False
    )
    proc.start()
    multiprocess.process._children.discard(proc)  # the arbiter reaps it (see pool.spawn)
    return proc


class HttpKeeper:
    """The HTTP child and its socket: restarted whenever it dies while the server runs."""

    def __init__(self, config: Config, url: str) -> None:
        if config.app:
            from qsup.http.app import load_user_app

            load_user_app(config.app)  # a bad --app is a configuration error now
        self.config, self.url = config, url
        self.sock = bind(config)
        self.proc = _fork(config, url, self.sock)
        self.started_at = time.monotonic()
        self.quick_deaths = 0  # deaths in a row, each within STABLE_AFTER of its start
        self.restart_at: float | None = None
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        logger.info("HTTP on http://{}:{} (pid {})", shown, port, self.proc.pid)

    def exited(self, pid: int, code: int, now: float) -> bool:
        """A child exited: if it was ours, log it and plan the restart."""
        if self.proc is None or pid != self.proc.pid:
            return False
        lived = now - self.started_at
        self.quick_deaths = self.quick_deaths + 1 if lived < STABLE_AFTER else 1
        delay = respawn_delay(self.quick_deaths - 1)
        self.proc, self.restart_at = None, now + delay
        logger.error(
            "HTTP process {} died ({}) after {:.1f} s; restarting it in {:g} s",
            pid,
            exit_label(code),
            lived,
            delay,
        )
        return True

    def deadlines(self) -> list[float]:
        return [] if self.restart_at is None else [self.restart_at]

    def restart_if_due(self, now: float, fork_lock: threading.Lock) -> None:
        """Fork a new child when due, unless the writer thread is mid-flush (see Crew._spawn)."""
        if self.restart_at is None or now < self.restart_at:
            return
        if not fork_lock.acquire(blocking=False):
            return
        try:
            self.proc = _fork(self.config, self.url, self.sock)
        finally:
            fork_lock.release()
        self.restart_at, self.started_at = None, now
        logger.info("HTTP process restarted (pid {})", self.proc.pid)

    def stop(self) -> None:
        self.restart_at = None
        stop_http(self.proc)
        self.sock.close()


def stop_http(proc: Any, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, then SIGKILL. Works even if the supervisor's reaper collected it."""
    if proc is None or proc.pid is None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_ready([proc.sentinel], timeout):
        logger.warning("HTTP process {} did not stop in {} s: killing it", proc.pid, timeout)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_ready([proc.sentinel], 5)
    proc.join(1)
