"""What a job costs its worker, measured just before and after it (about 3 us a job).

CPU: user + system seconds of every thread of the worker (``CLOCK_PROCESS_CPUTIME_ID``, a
fifth of ``getrusage``'s cost). Peak: the kernel's high-water mark of the worker's RSS
(``getrusage``'s ``ru_maxrss``), reset to the current RSS (``/proc/self/clear_refs`` "5")
after a job that left it higher, so each job's peak is its own. Growth: the change of the
worker's unique memory (``statm``'s resident minus file-backed and shared pages, the RssAnon
of ``/proc/self/status``), so pages still shared with the supervisor after the fork are not
counted as the job's.
"""

from __future__ import annotations

import os
import resource
import time

from qsup.linux import PAGE as _PAGE

_SLACK = 256  # pages (1 MB at 4 KiB) the high-water mark may exceed RSS before a reset


class Meter:
    def __init__(self) -> None:
        try:
            self._statm: int | None = os.open("/proc/self/statm", os.O_RDONLY)
            self._clear: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:  # not Linux: CPU only
            self._statm = self._clear = None
        self.unique = self._pages()[1] * _PAGE  # bytes, after the last job

    def _pages(self) -> tuple[int, int]:
        """(resident, unique) pages; zeros where /proc is missing."""
        if self._statm is None:
            return 0, 0
        fields = os.pread(self._statm, 128, 0).split()
        resident = int(fields[1])
        return resident, resident - int(fields[2])

    start = staticmethod(time.process_time)  # CPU seconds so far (user + system), for stop()

    def stop(self, cpu_before: float) -> tuple[float, int, int]:
        """(CPU seconds, peak bytes, growth bytes) since ``start``; ``unique`` is updated."""
        cpu = time.process_time() - cpu_before
        usage = resource.getrusage(resource.RUSAGE_SELF)
        resident, unique = self._pages()
        peak_pages = usage.ru_maxrss * 1024 // _PAGE  # kilobytes on Linux
        if self._clear is not None and peak_pages > resident + _SLACK:
            os.pwrite(self._clear, b"5", 0)  # the next job's peak starts from here
        growth = unique * _PAGE - self.unique
        self.unique = unique * _PAGE
        return cpu, peak_pages * _PAGE, growth
