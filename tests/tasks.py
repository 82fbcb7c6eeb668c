"""Task functions used by the tests (imported by real ``qsup serve`` processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from qsup import NonRetryableError, Retry, current_task, task


def add(a, b):
    return a + b


async def async_add(a, b):
    await asyncio.sleep(0.001)
    return a + b


def noop():
    return None


def record(directory: str, key: str, seconds: float = 0.0) -> str:
    """Sleep, then append this run to ``directory/key`` so tests can count executions."""
    time.sleep(seconds)
    with open(Path(directory) / key, "a") as f:
        f.write(f"{os.getpid()}\n")
    return key


def sleep_then_return(seconds: float, value=None):
    time.sleep(seconds)
    return value


def fail_until(attempts_needed: int):
    """Fail until the given attempt, then succeed with the attempt number."""
    if current_task.attempt < attempts_needed:
        raise RuntimeError(f"failing on attempt {current_task.attempt}")
    return current_task.attempt


def always_fail():
    raise ValueError("this task always fails")


async def async_fail():
    await asyncio.sleep(0)
    raise ValueError("this async task always fails")


def deaf_to_timeouts(seconds: float) -> None:
    """Block SIGALRM (as some C code does), so only the supervisor's SIGKILL ends it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)


def fatal():
    raise NonRetryableError("do not retry me")


def ask_retry():
    if current_task.attempt == 1:
        raise Retry(delay=0.1, reason="come back later")
    return "second time lucky"


def crash_once(directory: str):
    """Kill our own worker on the first attempt; succeed afterwards."""
    marker = Path(directory) / "crashed"
    if not marker.exists():
        marker.write_text("x")
        os._exit(17)
    return "survived"


def not_json():
    return object()


def busy_loop(seconds: float):
    end = time.time() + seconds
    while time.time() < end:
        pass
    return seconds


def log_and_context(steps: int):
    for i in range(steps):
        current_task.log(f"step {i}")
        current_task.context["progress"] = i + 1
        current_task.save_context()
    return steps


def spawn_children(count: int):
    refs = [current_task.add_task(add, i, i) for i in range(count)]
    return [str(r.task_id) for r in refs]


@task(queue="special", retries=0, timeout=5)
def decorated(x):
    return x * 2


@task(retries=0, timeout=5)
def echo_headers():
    """Its headers, as the task reads them (POST /api/tasks, qsup enqueue --header)."""
    return current_task.headers


def leak(megabytes: int):
    _LEAK.append(bytearray(megabytes * 2**20))
    return len(_LEAK)


_LEAK: list[bytearray] = []


def orphan_grandchild(directory: str) -> int:
    """Start a grandchild that outlives its parent (a daemon); it writes its pid, then exits."""
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            (Path(directory) / "grandchild").write_text(str(os.getpid()))
            time.sleep(1.0)
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    return child


def big_result(size: int) -> str:
    return "x" * size


def nul_result() -> str:
    return "a\x00b"


def fan_out(directory: str, count: int) -> int:
    """Add ``count`` children and a final task that depends on all of them."""
    children = [current_task.add_task(record, directory, f"child{i}") for i in range(count)]
    current_task.add_task(record, directory, "final", _depends_on=children)
    return count


_initialized_in: int | None = None  # the pid that ran init_worker, set in workers only


def init_worker() -> None:
    """A ``worker_init`` hook: runs in each worker after the fork."""
    global _initialized_in
    _initialized_in = os.getpid()


def initialized_here() -> bool:
    return _initialized_in == os.getpid()


def span(path: str, label: str, seconds: float) -> None:
    """Run ``seconds``, then append ``label start end`` (wall clock) to ``path``: the flow
    control tests measure overlap and starts per window from these lines."""
    start = time.time()
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"{label} {start!r} {time.time()!r}\n")


@task(queue="imports", concurrency_key=lambda tenant, rows: f"tenant:{tenant}")
def import_rows(tenant: int, rows: int) -> int:
    return rows


# --- inside a running task (issue 31): its stack, progress and cost ------------------------
# Each touches ``sign`` once it runs, then waits (sleeping) until ``release`` exists: the test
# looks inside it meanwhile, however slow the machine, then lets it end (60 s at most).


def deep_wait(sign: str, release: str) -> str:
    Path(sign).touch()
    give_up = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < give_up:
        time.sleep(0.05)  # in a C call, most of the time
    return "woke"


def wait_deeply(sign: str, release: str) -> str:
    return deep_wait(sign, release)


async def async_deep_wait(sign: str, release: str) -> str:
    Path(sign).touch()
    give_up = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < give_up:
        await asyncio.sleep(0.05)
    return "woke"


async def async_waits_deeply(sign: str, release: str) -> str:
    return await async_deep_wait(sign, release)


def report_progress(sign: str, release: str) -> str:
    """Progress 0.25, then 0.5 (within the throttle: it arrives a second later), then wait."""
    current_task.progress(0.25, "starting")
    current_task.progress(0.5, "half way", rows=500)
    return deep_wait(sign, release)


def hold_memory(sign: str, release: str, megabytes: int) -> int:
    """Allocate and touch ``megabytes``, then hold them while waiting."""
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    deep_wait(sign, release)
    return len(block)


def spawn_foreign_child() -> str:
    """Adds a child whose function lives outside the server's modules (``posix:getpid``)."""
    return str(current_task.add_task(os.getpid).task_id)
