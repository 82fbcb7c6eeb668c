"""Signals reach the arbiter as bytes on a wake-up pipe; the handlers themselves do nothing.

``signal.set_wakeup_fd`` makes the interpreter write each signal number to the pipe, which
sits in the arbiter's selector beside LISTEN and the worker pipes. No logging, no I/O and no
state change ever happens inside a handler.
"""

from __future__ import annotations

import os
import signal
from typing import Any

HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


def _noop(signum: int, frame: Any) -> None:
    """The wake-up fd already carries the signal number."""


class SignalPipe:
    """The read end of the wake-up pipe and the list of signals not yet handled."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for sig in HANDLED:
            signal.signal(sig, _noop)

    def drain(self) -> list[signal.Signals]:
        received: list[signal.Signals] = []
        while True:
            try:
                data = os.read(self.read_fd, 512)
            except BlockingIOError:
                break
            if not data:
                break
            received.extend(signal.Signals(b) for b in data)
        return received

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        os.close(self.read_fd)
        os.close(self.write_fd)
