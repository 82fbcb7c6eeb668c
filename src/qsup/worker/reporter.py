"""Results leave a worker in batches, but never late.

The main thread sends a batch once its oldest result is ``REPORT_EVERY`` old. A long job would
hold back the results of the tiny jobs before it (the supervisor infers from those results which
job runs, and so its deadline), so a helper thread sends anything older than ``SAFETY_NET``
while the worker is busy, and reads the worker's pipe (``on_tick``: a Drop must not wait for a long
job to end). It sleeps while the worker idles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from qsup import context, protocol

REPORT_EVERY = 0.002  # seconds a result may wait for company
SAFETY_NET = 0.02  # seconds after which the helper thread sends what a long job holds back


class Reporter:
    def __init__(self, on_tick: Callable[[], None]) -> None:
        self._on_tick = on_tick
        self._pending: list[protocol.Finished] = []
        self._lock = threading.Lock()
        self._busy = threading.Event()
        threading.Thread(target=self._watch, name="qsup-reporter", daemon=True).start()

    def working(self) -> None:
        """The worker has jobs: the safety net watches."""
        self._busy.set()

    def add(self, finished: protocol.Finished) -> None:
        with self._lock:
            self._pending.append(finished)
            if finished.outcome != "ok" or finished.done - self._pending[0].done >= REPORT_EVERY:
                self._send_pending()

    def flush(self) -> None:
        """Send everything now (before waiting idle, releasing jobs or exiting)."""
        with self._lock:
            self._send_pending()
            self._busy.clear()

    def _watch(self) -> None:
        while True:
            self._busy.wait()
            time.sleep(SAFETY_NET)
            with self._lock:
                if self._pending and time.time() - self._pending[0].done >= SAFETY_NET:
                    self._send_pending()
            self._on_tick()

    def _send_pending(self) -> None:
        if self._pending:
            context.send(protocol.Results(tuple(self._pending)))
            self._pending = []
