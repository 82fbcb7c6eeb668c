"""What an attempt cost, as people read it: CPU seconds, peak memory, memory growth."""

from __future__ import annotations

MB = 2**20
Usage = tuple[float | None, int | None, int | None]  # an attempt's CPU s, peak, growth bytes
NO_USAGE: Usage = (None, None, None)  # a worker that died did not say


def megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value / MB:.1f} MB"


def describe(usage: Usage) -> str:
    """`` (CPU 0.51 s, peak 212.3 MB, growth 200.0 MB)``, or nothing when not measured."""
    cpu, peak, growth = usage
    if cpu is None:
        return ""
    return f" (CPU {cpu:.3g} s, peak {megabytes(peak)}, growth {megabytes(growth)})"
