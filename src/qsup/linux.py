"""Two Linux process controls (prctl), the cgroup's OOM-kill count and a process's own memory;
harmless elsewhere."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies."""
    return _prctl(_PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> bool:
    """Adopt orphaned descendants (e.g. daemons started by tasks) so the arbiter reaps them,
    as PID 1 would in a container."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _cgroup_files() -> list[Path]:
    """Where this process's cgroup counts OOM kills: v2 ``memory.events``, v1
    ``memory.oom_control``, under the path /proc/self/cgroup gives and at the mount's root (a
    container sees its own cgroup there)."""
    root = Path("/sys/fs/cgroup")
    files = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            files.append(root / path.lstrip("/") / "memory.events")
        elif "memory" in controllers.split(","):
            files.append(root / "memory" / path.lstrip("/") / "memory.oom_control")
    return list(
        dict.fromkeys([*files, root / "memory.events", root / "memory" / "memory.oom_control"])
    )


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed in our cgroup, or None when no
    cgroup file says (not Linux, no memory controller)."""
    for file in _cgroup_files():
        try:
            text = file.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def unique_memory(pid: int) -> int | None:
    """A process's own memory in bytes: resident pages not file-backed or shared (statm;
    anonymous pages still shared with its parent after a fork count until either writes
    them); None when it is gone or there is no /proc."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            fields = f.read().split()
    except OSError:
        return None
    return (int(fields[1]) - int(fields[2])) * PAGE
