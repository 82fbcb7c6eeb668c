"""What a job costs its worker, measured just before and after it (about 1.5 us a job).

CPU: user + system seconds of every thread of the worker (``CLOCK_PROCESS_CPUTIME_ID``, a
fifth of ``getrusage``'s cost). Peak: the kernel's high-water mark of the worker's RSS
(``getrusage``'s ``ru_maxrss``), reset to the current RSS (``/proc/self/clear_refs`` "5")
when it is left above it, so each job's peak is its own. Growth: the change of the worker's
unique memory (``statm``'s resident minus file-backed and shared pages, the RssAnon of
``/proc/self/status``), so pages still shared with the supervisor after the fork are not
counted as the job's. Reading ``statm`` is most of the cost, so it is read only when the
high-water mark moved (the job grew the worker by more than ``_SLACK``, or the mark was reset)
and every ``_EVERY`` jobs: growth under 1 MB is then counted on the job that reads it. A job
shorter than ``_BRIEF`` (most tiny tasks; in 1 ms a task touches some MB at most) skips both
reads unless it is the ``_EVERY``-th: its peak is the last mark, its growth is counted later.
"""

from __future__ import annotations

import os
import resource
import time

from qsup.linux import PAGE as _PAGE

_SLACK = 256  # pages (1 MB at 4 KiB) the high-water mark may exceed RSS before a reset
_EVERY = 16  # jobs between reads of statm while the high-water mark stays put
_BRIEF = 0.001  # seconds: a job this short only gets its CPU measured (but every _EVERY-th)


class Meter:
    def __init__(self) -> None:
        try:
            self._statm: int | None = os.open("/proc/self/statm", os.O_RDONLY)
            self._clear: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:  # not Linux: CPU and peak only
            self._statm = self._clear = None
        self.unique = self._pages()[1] * _PAGE  # bytes, after the last read
        self._mark = -1  # ru_maxrss (kB) at the last read of statm
        self._unread = 0  # jobs since

    def _pages(self) -> tuple[int, int]:
        """(resident, unique) pages; zeros where /proc is missing."""
        if self._statm is None:
            return 0, 0
        fields = os.pread(self._statm, 128, 0).split()
        resident = int(fields[1])
        return resident, resident - int(fields[2])

    def resident(self) -> int:
        """The worker's resident memory now, bytes (``pread``: safe from any thread)."""
        return self._pages()[0] * _PAGE

    start = staticmethod(time.process_time)  # CPU seconds so far (user + system), for stop()

    def stop(self, cpu_before: float, seconds: float) -> tuple[float, int, int]:
        """(CPU seconds, peak bytes, growth bytes) of a job that took ``seconds`` since
        ``start``; ``unique`` is updated whenever statm is read."""
        cpu = time.process_time() - cpu_before
        self._unread += 1
        if seconds < _BRIEF and self._unread < _EVERY and self._mark >= 0:
            return cpu, self._mark * 1024, 0
        mark = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
        if mark == self._mark and self._unread < _EVERY or self._statm is None:
            return cpu, mark * 1024, 0
        self._unread = 0
        resident, unique = self._pages()
        growth = unique * _PAGE - self.unique
        self.unique = unique * _PAGE
        self._mark = mark
        if self._clear is not None and mark * 1024 // _PAGE > resident + _SLACK:
            os.pwrite(self._clear, b"5", 0)  # the next job's peak starts from here
            self._mark = -1  # and the moved mark makes it read statm
        return cpu, mark * 1024, growth
