"""The worker process entry point: runs after the fork, never returns into the supervisor."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from setproctitle import setproctitle

from qsup import context, middleware, protocol
from qsup.encoding import resolve_task
from qsup.linux import die_with_parent
from qsup.settings import Config
from qsup.worker.mailbox import Mailbox
from qsup.worker.reporter import Reporter
from qsup.worker.runner import Runner


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when the supervisor dies, so no worker is orphaned
    (elsewhere than Linux, the pipe's EOF still stops idle workers)."""
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _reset_signals() -> None:
    """Undo the supervisor's handlers; ignore what the terminal sends to the whole group."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)


def _close_inherited_fds(keep: int) -> None:
    """Drop the supervisor's sockets and pipes: a worker must never touch its connections."""
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)


def worker_main(conn: Any, slot: int, parent_pid: int, config: Config) -> None:
    """Boot, then loop: receive jobs, run them, report. Exits via ``os._exit`` only."""
    code = 0
    try:
        _die_with_parent(parent_pid)
        _reset_signals()
        _close_inherited_fds(conn.fileno())
        context.bind_channel(conn.send_bytes)
        if config.worker_init:  # checked by the supervisor; a raise here is a boot crash
            resolve_task(config.worker_init)()  # e.g. an OpenTelemetry SDK and its exporters
        middleware.forget_instances()  # the Runner instantiates this process's own
        runner = Runner(config)
        context.send(protocol.Ready(os.getpid()))
        _serve(conn, slot, runner)
    except (EOFError, OSError, KeyboardInterrupt):
        code = 0  # the supervisor went away or told us to stop
    except BaseException:  # noqa: BLE001 - report anything, then exit non-zero
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(conn: Any, slot: int, runner: Runner) -> None:
    """Run jobs in the order received. A ``Started`` is sent only after waiting idle: when
    jobs follow each other, each result tells the supervisor the next one began."""
    mailbox = Mailbox(conn, runner.inspect)

    def tick() -> None:
        mailbox.read_waiting()
        context.send_held_progress()

    reporter = Reporter(on_tick=tick)
    title = ""
    while True:
        announce = not mailbox
        if announce:
            reporter.flush()
            setproctitle(title := f"qsup: worker {slot} idle")
        job = mailbox.next_job(block=announce)  # and what arrived while we were busy
        if job is None:
            if mailbox.stopped:
                reporter.flush()
                mailbox.release_all()
                return
            continue  # a Drop took what we held
        if announce:
            reporter.working()
        if title != (title := f"qsup: worker {slot} running {job.name}"):
            setproctitle(title)
        if announce:
            context.send(protocol.Started(job.id, time.time()))
        reporter.add(runner.run(job))
