"""Run the HTTP server (uvicorn) in a child process forked from the supervisor.

The listening socket is bound in the supervisor before the fork, so a port already in use is
a configuration error at start-up (exit 2) rather than a dead child. The child owns the socket
and its own database pool, ignores the terminal's group signals (the supervisor stops it with
SIGTERM after draining) and dies with the supervisor (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from typing import Any

import multiprocess
from loguru import logger
from multiprocess.connection import wait as wait_ready

from qsup.errors import ConfigError
from qsup.linux import die_with_parent
from qsup.settings import Config

STOP_TIMEOUT = 10.0


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
    _Server.run(config, url, sock)


def start_http(config: Config, url: str) -> Any:
    """Fork the HTTP child; returns its ``multiprocess.Process``."""
    if config.app:
        from qsup.http.app import load_user_app

        load_user_app(config.app)  # a bad --app is a configuration error now, not a dead child
    sock = bind(config)
    host, port = sock.getsockname()[:2]
    ctx = multiprocess.get_context("fork")
    proc = ctx.Process(
        target=_child_main, args=(config, url, sock, os.getpid()), name="qsup-http", daemon=False
    )
    proc.start()
    sock.close()  # the child has its own copy
    shown = f"[{host}]" if ":" in host else host
    logger.info("HTTP on http://{}:{} (pid {})", shown, port, proc.pid)
    return proc


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
