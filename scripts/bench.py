#!/usr/bin/env python
"""qsup benchmark: enqueue, drain, latency, the raw SKIP LOCKED ceiling, resources and peers.

    python scripts/bench.py --quick                  # enqueue, ceiling, drain, latency: < 1 min
    python scripts/bench.py > bench.json             # the full run (a few minutes)
    python scripts/bench.py --database-url postgresql://... --only drain,latency
    python scripts/bench.py --only bigtable --rows 1000000   # reads at millions of rows

Prints one JSON document on stdout (progress goes to stderr). Without ``--database-url`` it
starts a fresh embedded PostgreSQL in a temporary directory. Every scenario gets a fresh
database; repeats report median, min and max. Raw SQL lives in ``scripts/bench.sql``; task
functions in ``scripts/bench_tasks.py``. Peers (pgqueuer, procrastinate) run when importable
(``pip install -e ".[bench]"``) and are reported as "not installed" otherwise.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
import psycopg.sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_edge  # noqa: E402
import bench_flow  # noqa: E402
import bench_hooks  # noqa: E402
import bench_producers  # noqa: E402
import bench_reads  # noqa: E402
import bench_retention  # noqa: E402
import bench_steady  # noqa: E402
import bench_tasks  # noqa: E402  (scripts/ is on sys.path: the same name the server imports)
import bench_workflows  # noqa: E402

from qsup import Queue  # noqa: E402
from qsup.db.migrate import migrate  # noqa: E402
from qsup.sql import parse_queries  # noqa: E402

SQL = parse_queries((HERE / "bench.sql").read_text(encoding="utf-8"))
POLL = 0.02  # seconds between completion checks
STARTED: dict[int, Any] = {}  # pid -> Popen / Process we started: always stopped at exit


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def stats(values: list[float], digits: int = 1) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- databases ------------------------------------------------------------------------------


class Databases:
    """A server (given or embedded in a temp dir) and a fresh database per scenario."""

    def __init__(self, url: str | None) -> None:
        self.tmpdir: str | None = None
        if url is None:
            from qsup.db.embedded import embedded_url

            self.tmpdir = tempfile.mkdtemp(prefix="qsup-bench-")
            # atexit runs last-registered first: qsup's embedded handling stops the server
            # as this process (its last user) exits, then this removes the temp dir. (Setting
            # the wheel's cleanup_mode too made it run `pg_ctl stop` on the stopped server:
            # "Failed postgres command ... pg_ctl stop" on stderr.)
            atexit.register(shutil.rmtree, self.tmpdir, True)
            log(f"starting an embedded PostgreSQL in {self.tmpdir}")
            url = embedded_url(self.tmpdir)
        self.url = url
        self.created: list[str] = []
        with psycopg.connect(url, autocommit=True) as conn:
            self.version = conn.execute(SQL["server_version"]).fetchone()[0]

    def fresh(self, scenario: str, baseline: str | None = None) -> str:
        """A new database migrated by this checkout, or by the ``baseline`` checkout's code
        (its src/ directory: its own schema)."""
        name = f"qsup_bench_{scenario}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL(SQL["create_database"]).format(name=psycopg.sql.Identifier(name))
            )
        self.created.append(name)
        url = make_conninfo(self.url, dbname=name)
        if baseline:
            code = (
                "import sys, psycopg; from qsup.db.migrate import migrate;"
                " migrate(psycopg.connect(sys.argv[1], autocommit=True))"
            )
            env = {**os.environ, "PYTHONPATH": baseline}
            subprocess.run([sys.executable, "-c", code, url], check=True, env=env)
            return url
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        return url

    def close(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as admin:
                for name in self.created:
                    admin.execute(
                        psycopg.sql.SQL(SQL["drop_database"]).format(
                            name=psycopg.sql.Identifier(name)
                        )
                    )
        except psycopg.Error as exc:
            log(f"could not drop the bench databases: {exc}")
        # The embedded server stops when this process (its last user) exits.


def execute(url: str, name: str, params: dict[str, Any] | None = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(SQL[name], params)
        return cur.fetchall() if cur.description else None


def reset(url: str) -> None:
    execute(url, "reset")


def enqueue_noops(
    url: str,
    count: int,
    fn: Callable[..., Any] = bench_tasks.noop,
    args: tuple[Any, ...] = (),
    options: dict[str, Any] | None = None,
) -> None:
    """Pre-enqueue ``count`` tasks with qsup's batch API (COPY); ``options`` such as
    ``{"_queue": "q"}``."""
    q = Queue(url)
    try:
        for start in range(0, count, 5000):
            q.add_tasks([(fn, args, options or {})] * min(5000, count - start))
    finally:
        q.close()


# --- processes ------------------------------------------------------------------------------


def stop_process(pid: int, timeout: float = 15.0) -> int | None:
    """SIGTERM one process we started, wait, SIGKILL if it lingers; returns its exit code."""
    proc = STARTED.pop(pid, None)
    if proc is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        if isinstance(proc, subprocess.Popen):
            return proc.wait(timeout)
        proc.join(timeout)
        if proc.exitcode is None:
            raise subprocess.TimeoutExpired(str(pid), timeout)
        return proc.exitcode
    except subprocess.TimeoutExpired:
        log(f"pid {pid} did not stop within {timeout} s: SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if isinstance(proc, subprocess.Popen):
            return proc.wait(5)
        proc.join(5)
        return proc.exitcode


def stop_all() -> None:
    for pid in list(STARTED):
        stop_process(pid, timeout=10)


class Serve:
    """A real ``qsup serve --no-http`` subprocess on one database."""

    def __init__(
        self,
        url: str,
        workers: int,
        min_workers: int | None = None,
        extra_env: dict[str, str] | None = None,
        logdir: str | None = None,
        http: bool = False,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "qsup",
            "serve",
            "--workers",
            str(workers),
            "--import",
            "bench_tasks",
            *(["--port", "0"] if http else ["--no-http"]),
        ]
        if min_workers is not None:
            self.args += ["--min-workers", str(min_workers)]
        self.env = dict(
            os.environ,
            QUEUE_DATABASE_URL=url,
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        )
        self.env.update(extra_env or {})
        self.logdir = logdir or tempfile.gettempdir()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> Serve:
        logfile = open(Path(self.logdir) / f"serve-{uuid.uuid4().hex[:6]}.log", "wb")  # noqa: SIM115
        self.logpath = logfile.name
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        STARTED[self.proc.pid] = self.proc
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = Path(self.logpath).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"qsup serve exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> int | None:
        return stop_process(self.pid) if self.proc is not None else None

    def __enter__(self) -> Serve:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_drained(
    url: str, timeout: float, serve: Serve | None = None, stamp_first: bool = True
) -> tuple[float, float | None]:
    """Poll every 20 ms until no task is unfinished; returns (end time, first-completion time)."""
    deadline = time.monotonic() + timeout
    first: float | None = None
    total: int | None = None
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            left = conn.execute(SQL["remaining"]).fetchone()[0]
            now = time.monotonic()
            if total is None:
                total = left
            elif first is None and left < total and stamp_first:
                first = now
            if left == 0:
                return now, first
            if now > deadline:
                raise TimeoutError(f"{left} tasks still unfinished after {timeout} s")
            if serve is not None:
                serve.check()
            time.sleep(POLL)


def completed_span(url: str) -> tuple[int, float | None]:
    count, span = execute(url, "completed_span")[0]
    return count, span


# --- 1. enqueue -----------------------------------------------------------------------------


def scenario_enqueue(dbs: Databases, quick: bool, repeats: int) -> dict[str, Any]:
    single_n = 500 if quick else 20000  # one commit each: 2,000 took 18 s on a busy VM
    batch_n = 20000 if quick else 100000
    url = dbs.fresh("enqueue")
    name = "bench_tasks:noop"
    runs: dict[str, list[float]] = {
        k: []
        for k in (
            "add_task_pool",
            "add_task_connection",
            "bare_insert",
            "add_tasks_1000",
            "bare_copy_1000",
        )
    }
    for rep in range(repeats):
        log(f"enqueue: repeat {rep + 1}/{repeats}")
        q = Queue(url)
        try:
            reset(url)
            q.add_task(bench_tasks.noop)  # open the pool, warm the statement
            t0 = time.perf_counter()
            for _ in range(single_n):
                q.add_task(bench_tasks.noop)
            runs["add_task_pool"].append(single_n / (time.perf_counter() - t0))

            reset(url)
            with psycopg.connect(url, autocommit=True) as conn:
                q.add_task(bench_tasks.noop, connection=conn)
                t0 = time.perf_counter()
                for _ in range(single_n):
                    q.add_task(bench_tasks.noop, connection=conn)
                runs["add_task_connection"].append(single_n / (time.perf_counter() - t0))

            reset(url)
            with psycopg.connect(url, autocommit=True) as conn:
                query = SQL["bare_insert"]
                conn.execute(
                    query, {"id": uuid.uuid4(), "name": name, "args": "[]", "kwargs": "{}"}
                )
                t0 = time.perf_counter()
                for _ in range(single_n):
                    conn.execute(
                        query, {"id": uuid.uuid4(), "name": name, "args": "[]", "kwargs": "{}"}
                    )
                runs["bare_insert"].append(single_n / (time.perf_counter() - t0))

            reset(url)
            calls = [(bench_tasks.noop, (), {})] * 1000
            q.add_tasks(calls[:10])
            t0 = time.perf_counter()
            for _ in range(batch_n // 1000):
                q.add_tasks(calls)
            runs["add_tasks_1000"].append(batch_n / (time.perf_counter() - t0))

            reset(url)
            with psycopg.connect(url, autocommit=True) as conn:
                t0 = time.perf_counter()
                for _ in range(batch_n // 1000):
                    with conn.transaction(), conn.cursor().copy(SQL["bare_copy"]) as copy:
                        for _ in range(1000):
                            copy.write_row((uuid.uuid4(), name, "[]", "{}"))
                runs["bare_copy_1000"].append(batch_n / (time.perf_counter() - t0))
        finally:
            q.close()
    result: dict[str, Any] = {"single_tasks": single_n, "batch_tasks": batch_n, "unit": "tasks/s"}
    result.update({k: stats(v, 0) for k, v in runs.items()})
    bare = statistics.median(runs["bare_insert"])
    result["single_vs_bare_insert_slowdown"] = round(
        bare / statistics.median(runs["add_task_connection"]), 2
    )
    result["single_pool_vs_bare_insert_slowdown"] = round(
        bare / statistics.median(runs["add_task_pool"]), 2
    )
    result["batch_vs_bare_copy"] = round(
        statistics.median(runs["add_tasks_1000"]) / statistics.median(runs["bare_copy_1000"]), 2
    )
    return result


# --- 2. drain -------------------------------------------------------------------------------


def steal_percent(before: Any, after: Any) -> float | None:
    """CPU time the hypervisor took from this VM between two ``psutil.cpu_times()``."""
    if not hasattr(before, "steal"):
        return None
    total = sum(after) - sum(before)
    return round(100 * (after.steal - before.steal) / total, 1) if total else None


def drain_once(
    url: str,
    count: int,
    workers: int,
    fn: Callable[..., Any] = bench_tasks.noop,
    args: tuple[Any, ...] = (),
    timeout: float = 300.0,
    logdir: str | None = None,
    http: bool = False,
    env: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, float | None]:
    execute(url, "delete_measured")
    enqueue_noops(url, count, fn, args, options)
    cpu_before = psutil.cpu_times()
    serve = Serve(url, workers, extra_env=env, logdir=logdir, http=http).start()
    try:
        end, first = wait_drained(url, timeout, serve)
    finally:
        code = serve.stop()
    wall = end - serve.started_at
    done, span = completed_span(url)
    if done != count:
        raise RuntimeError(f"expected {count} completed tasks, found {done}")
    return {
        "wall_s": wall,
        "tasks_per_s": count / wall,
        "steady_tasks_per_s": count / span if span else None,
        "startup_s": (first - serve.started_at) if first else None,
        "first_start_to_last_end_s": span,
        "exit_code": code,
        "steal_percent": steal_percent(cpu_before, psutil.cpu_times()),
    }


def _burn_share(count: int, seconds: float) -> None:
    for _ in range(count):
        bench_tasks.burn(seconds)


def burn_floor_once(tasks: int, seconds: float, processes: int = 2) -> float:
    """Wall time of the same CPU burns in bare forked processes: no queue, no database, no
    start-up. What this machine allows at best (the hypervisor's steal included)."""
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_burn_share, args=(tasks // processes, seconds))
        for _ in range(processes)
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
        STARTED[p.pid] = p
    for p in procs:
        p.join()
        STARTED.pop(p.pid, None)
    return time.monotonic() - t0


def summarise_drain(
    runs: list[dict[str, Any]], count: int, workers: int, ideal_s: float | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tasks": count,
        "workers": workers,
        "tasks_per_s": stats([r["tasks_per_s"] for r in runs], 0),
        "steady_tasks_per_s": stats([r["steady_tasks_per_s"] for r in runs], 0),
        "wall_s": stats([r["wall_s"] for r in runs], 2),
        "startup_s": stats([r["startup_s"] for r in runs], 2),
        "first_start_to_last_end_s": stats([r["first_start_to_last_end_s"] for r in runs], 2),
        "steal_percent": [r["steal_percent"] for r in runs],
    }
    if ideal_s:
        out["ideal_s"] = ideal_s
        out["wall_vs_ideal"] = round(out["wall_s"]["median"] / ideal_s, 3)
        out["span_vs_ideal"] = round(out["first_start_to_last_end_s"]["median"] / ideal_s, 3)
    return out


def drain_against_baseline(
    dbs: Databases, baseline: str, n: int, repeats: int, logdir: str
) -> dict[str, Any]:
    """The plain no-op drain (--workers 2 --no-http) of ``baseline`` (a src/ directory, on
    its own schema) and of this checkout, alternated in one run."""
    urls = {"baseline": dbs.fresh("drain_base", baseline), "this": dbs.fresh("drain_this")}
    envs = {"baseline": {"PYTHONPATH": os.pathsep.join([str(HERE), baseline])}, "this": None}
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "this": []}
    for rep in range(repeats):
        for key in ("baseline", "this") if rep % 2 == 0 else ("this", "baseline"):
            log(f"drain: {n} no-op tasks, {key}, repeat {rep + 1}/{repeats}")
            runs[key].append(drain_once(urls[key], n, 2, logdir=logdir, env=envs[key]))
    out = {key: summarise_drain(r, n, 2) for key, r in runs.items()}
    out["this_vs_baseline"] = ratio(
        out["this"]["tasks_per_s"]["median"], out["baseline"]["tasks_per_s"]["median"], 3
    )
    return out


def scenario_drain(
    dbs: Databases, quick: bool, repeats: int, logdir: str, baseline: str | None = None
) -> dict[str, Any]:
    noop_n = 5000 if quick else 20000
    if baseline:
        return drain_against_baseline(dbs, baseline, noop_n, repeats, logdir)
    url = dbs.fresh("drain")
    sleep_n = 200 if quick else 1000
    result: dict[str, Any] = {}
    # --no-http (as `qsup queue start`) is the setting compared with the peers; the default
    # server also forks its HTTP process, whose start-up competes for the two cores.
    for key, workers, http in (
        ("noop_workers_2", 2, False),
        ("noop_workers_4", 4, False),
        ("noop_workers_2_http", 2, True),
    ):
        runs = []
        for rep in range(repeats):
            log(
                f"drain: {noop_n} no-op tasks, --workers {workers}{'' if http else ' --no-http'},"
                f" repeat {rep + 1}/{repeats}"
            )
            runs.append(drain_once(url, noop_n, workers, logdir=logdir, http=http))
        result[key] = summarise_drain(runs, noop_n, workers)
    for key, fn in (
        ("sleep_sync_10ms", bench_tasks.sleep_sync),
        ("sleep_async_10ms", bench_tasks.sleep_async),
    ):
        runs = []
        for rep in range(max(1, repeats - 1)):
            log(f"drain: {sleep_n} {key} tasks, --workers 2, repeat {rep + 1}")
            runs.append(drain_once(url, sleep_n, 2, fn, (0.01,), logdir=logdir))
        result[f"{key}_workers_2"] = summarise_drain(runs, sleep_n, 2, sleep_n * 0.01 / 2)
    return result


def scenario_hooks(dbs: Databases, quick: bool, repeats: int, logdir: str) -> dict[str, Any]:
    """What middleware and tracing cost (``scripts/bench_hooks.py``)."""
    url, count = dbs.fresh("hooks"), 5000 if quick else 20000

    def run(env: dict[str, str]) -> dict[str, Any]:
        log(f"hooks: drain of {count} no-op tasks, --workers 2, {env or 'plain'}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)  # serve, and the workers it reaped
        result = drain_once(url, count, 2, logdir=logdir, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return {**result, "cpu_us_per_task": cpu / count * 1e6}

    return {
        "micro": bench_hooks.micro(2000 if quick else 20000),
        "drain": {"tasks": count, **bench_hooks.drain(run, max(2, repeats))},
    }


def scenario_targets(dbs: Databases, repeats: int, logdir: str) -> dict[str, Any]:
    """The issue's CPU-bound and sleeping targets (full mode only)."""
    url = dbs.fresh("targets")
    result: dict[str, Any] = {}
    runs, floors = [], []
    for rep in range(repeats):
        log(f"targets: 200 x 50 ms CPU, --workers 2, repeat {rep + 1}/{repeats}")
        runs.append(drain_once(url, 200, 2, bench_tasks.burn, (0.05,), logdir=logdir))
        floors.append(burn_floor_once(200, 0.05))
    cpu = summarise_drain(runs, 200, 2, 200 * 0.05 / 2)
    cpu["bare_fork_floor_s"] = stats(floors, 2)
    cpu["wall_vs_floor"] = round(cpu["wall_s"]["median"] / cpu["bare_fork_floor_s"]["median"], 3)
    result["cpu_50ms_x200_workers_2"] = cpu
    workers = 10
    runs = []
    for rep in range(repeats):
        log(f"targets: 1000 x sleep 100 ms, --workers {workers}, repeat {rep + 1}/{repeats}")
        runs.append(drain_once(url, 1000, workers, bench_tasks.sleep_sync, (0.1,), logdir=logdir))
    result[f"sleep_100ms_x1000_workers_{workers}"] = summarise_drain(
        runs, 1000, workers, 1000 * 0.1 / workers
    )
    return result


def scenario_big_table(
    dbs: Databases, repeats: int, logdir: str, noop_w2: float | None, filler: int = 1_000_000
) -> dict[str, Any]:
    """Drain with a million finished rows in the table (full mode only)."""
    url = dbs.fresh("bigtable")
    log(f"big table: inserting {filler} finished rows")
    execute(url, "insert_filler", {"count": filler})
    execute(url, "vacuum_analyze")
    runs = []
    for rep in range(repeats):
        log(f"big table: 20000 no-op tasks, --workers 2, repeat {rep + 1}/{repeats}")
        runs.append(drain_once(url, 20000, 2, logdir=logdir))
    out = summarise_drain(runs, 20000, 2)
    out["finished_rows"] = filler
    if noop_w2:
        out["vs_empty_table"] = round(out["tasks_per_s"]["median"] / noop_w2, 3)
    return out


def scenario_bigtable(dbs: Databases, rows: int, repeats: int, logdir: str) -> dict[str, Any]:
    """Operators' reads at ``rows`` finished and 100,000 waiting tasks (``bench_reads``)."""
    url = dbs.fresh("reads")
    waiting = min(100_000, rows // 10)
    result: dict[str, Any] = {"finished_rows": rows, "waiting_rows": waiting}
    result["fill"] = bench_reads.fill(url, SQL, rows, waiting, log)
    port = bench_reads.free_port()
    serve = Serve(url, 1, logdir=logdir)
    serve.args[serve.args.index("--no-http")] = "--port"
    serve.args[serve.args.index("--port") + 1 : serve.args.index("--port") + 1] = [str(port)]
    serve.args += ["--queues", "bench_idle"]
    with serve:
        bench_reads.wait_http(port, serve.check)
        log(f"bigtable: timing reads, {repeats} each")
        result["reads"] = bench_reads.reads(url, port, repeats)
    return result


# --- 3. latency -----------------------------------------------------------------------------


def wait_ready(url: str, serve: Serve, timeout: float = 30.0) -> None:
    """Until the server ran one task: it is listening, its workers are up."""
    q = Queue(url)
    try:
        q.add_task(bench_tasks.noop)
        wait_drained(url, timeout, serve, stamp_first=False)
    finally:
        q.close()


def scenario_latency(dbs: Databases, quick: bool, repeats: int, logdir: str) -> dict[str, Any]:
    url = dbs.fresh("latency")
    count = 100 if quick else 500
    commit_ms: list[list[float]] = []
    call_ms: list[list[float]] = []
    for rep in range(repeats):
        log(f"latency: {count} tasks 20 ms apart, repeat {rep + 1}/{repeats}")
        reset(url)
        q = Queue(url)
        q.add_tasks([(bench_tasks.noop, (), {})])  # open the pool before the server starts
        execute(url, "delete_measured")
        sent: dict[uuid.UUID, tuple[float, float]] = {}
        try:
            with Serve(url, 2, logdir=logdir) as serve:
                wait_ready(url, serve)
                execute(url, "delete_measured")
                time.sleep(0.5)  # let the server settle into idle
                tick = time.monotonic()
                for _ in range(count):
                    before = time.time()
                    ref = q.add_task(bench_tasks.stamp)
                    sent[ref.task_id] = (before, time.time())
                    tick += 0.02
                    time.sleep(max(0.0, tick - time.monotonic()))
                wait_drained(url, 30, serve, stamp_first=False)
        finally:
            q.close()
        rows = execute(url, "results")
        commit_ms.append([(float(r) - sent[i][1]) * 1000 for i, r in rows if i in sent])
        call_ms.append([(float(r) - sent[i][0]) * 1000 for i, r in rows if i in sent])

    def pcts(samples: list[list[float]]) -> dict[str, Any]:
        return {f"p{p}_ms": stats([percentile(s, p) for s in samples], 2) for p in (50, 95, 99)}

    return {
        "tasks": count,
        "interval_ms": 20,
        "workers": 2,
        "commit_to_start": pcts(commit_ms),
        "call_to_start": pcts(call_ms),
        "note": "commit = add_task returned; start = time.time() in the task function",
    }


# --- workflows ------------------------------------------------------------------------------


def scenario_workflows(dbs: Databases, quick: bool, repeats: int, logdir: str) -> dict[str, Any]:
    """A group of 10,000 no-op steps and its .then() against the no-op drain of as many plain
    tasks (target: at least half its rate), and a 100-step chain's hop against a single task's
    enqueue-to-start latency (target: at most 3 ms more)."""
    url = dbs.fresh("workflows")
    members = 2000 if quick else 10000
    plain, wide, chained = [], [], []
    for rep in range(repeats):  # interleaved: the machine's noise hits both alike
        log(f"workflows: {members} plain no-op tasks, then a group of {members}, {rep + 1}")
        plain.append(drain_once(url, members + 1, 2, logdir=logdir))
        execute(url, "delete_measured")
        wide.append(bench_workflows.group_then(
            url, members, lambda: Serve(url, 2, logdir=logdir), wait_drained))  # fmt: skip
        execute(url, "delete_measured")
        log(f"workflows: a chain of 100 steps, repeat {rep + 1}")
        chained.append(bench_workflows.chain_hops(
            url, SQL, 100, lambda: Serve(url, 2, logdir=logdir), wait_ready))  # fmt: skip
        execute(url, "delete_measured")
    plain_rate = stats([r["tasks_per_s"] for r in plain], 0)
    group_rate = stats([r["steps_per_s"] for r in wide], 0)
    return {
        "workers": 2,
        "group": {"members": members, "runs": wide, "steps_per_s": group_rate,
                  "plain_drain_tasks_per_s": plain_rate,
                  "vs_plain_drain": ratio(group_rate["median"], plain_rate["median"])},
        "chain": {"hops": 100, "runs": chained,
                  "hop_over_single_ms": stats([r["hop_over_single_ms"] for r in chained], 2)},
    }  # fmt: skip


# --- steady load ----------------------------------------------------------------------------


def scenario_steady(
    dbs: Databases, rates: list[int], seconds: float, logdir: str
) -> dict[str, Any]:
    """A producer at each offered rate against one server (4 workers, 1 ms tasks); a fresh,
    never analysed table per rate, as a new deployment has."""
    runs = []
    for rate in rates:
        url = dbs.fresh("steady")
        log(f"steady: {rate} tasks/s for {seconds:g} s")
        with Serve(url, 4, logdir=logdir) as serve:
            wait_ready(url, serve)
            runs.append(bench_steady.run_rate(url, SQL, rate, seconds, serve.check))
    autovacuum = execute(dbs.url, "autovacuum_setting")[0][0]
    return {"workers": 4, "task_ms": 1, "tick_ms": bench_steady.TICK * 1000,
            "autovacuum": autovacuum, "runs": runs,
            "note": "pickup = task start stamp - date_enqueued; sizes in kB"}  # fmt: skip


def scenario_producers(dbs: Databases, quick: bool, repeats: int) -> dict[str, Any]:
    """SPEC §15: 1, 4, 16 and 48 producer processes, one task per transaction, wake-ups on and
    off and a bare INSERT; repeats alternate the modes within each size."""
    url = dbs.fresh("producers")
    sizes, seconds = ([1, 16] if quick else [1, 4, 16, 48]), (3.0 if quick else 5.0)
    log(f"producers: {sizes} processes, {seconds:g} s per run, {repeats} repeat(s)")
    reps = [bench_producers.run(url, SQL, sizes, seconds, reset) for _ in range(repeats)]
    runs = {
        size: {key: stats([r["runs"][size][key] for r in reps], 3) for key in reps[0]["runs"][size]}
        for size in reps[0]["runs"]
    }
    return {**reps[0], "runs": runs}


def scenario_retention(
    dbs: Databases, rate: int, seconds: float, ttl: float, logdir: str
) -> dict[str, Any]:
    """SPEC §15: a producer at ``rate`` against one server (2 workers, no-op tasks) with
    ``result_ttl = ttl``: rows, sizes and dead rows over time, pickup during prunes and between."""
    url = dbs.fresh("retention")
    log(f"retention: {rate} tasks/s for {seconds:g} s, result_ttl {ttl:g} s")
    env = {"QUEUE_RESULT_TTL": str(ttl)}
    with Serve(url, 2, extra_env=env, logdir=logdir) as serve:
        wait_ready(url, serve)
        run = bench_retention.run(url, SQL, rate, seconds, serve.check)
    return {"workers": 2, "result_ttl": ttl, **run,
            "note": "pickup = task start stamp - date_enqueued; sizes in kB"}  # fmt: skip


def scenario_flow(
    dbs: Databases, quick: bool, repeats: int, logdir: str, how: bench_flow.FlowArgs
) -> dict[str, Any]:
    """Flow control: the plain no-op drain of the baseline checkout and of this one, interleaved
    (and this one again while another queue has a limit); a ``concurrency = 8`` queue's drain
    of short sleeps against the same unlimited; a rate-limited queue's starts over a window."""
    url = dbs.fresh("flow")
    n, short_n, short_s = (
        (5000, 800, how.task_seconds) if quick else (20000, 4000, how.task_seconds)
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    variants = bench_flow.plain_variants(how.baseline, str(HERE))
    for rep in range(repeats):
        for key, env, limited_elsewhere in variants:
            log(f"flow: {n} no-op tasks, {key}, repeat {rep + 1}/{repeats}")
            bench_flow.limit_other_queue(url, limited_elsewhere)
            runs.setdefault(key, []).append(drain_once(url, n, 2, logdir=logdir, env=env))
    bench_flow.limit_other_queue(url, False)
    config = bench_flow.write_config(logdir, "[limits.limited]\nconcurrency = 8\n")
    for rep in range(repeats):
        for key, options in (("short_unlimited", {"_queue": "free"}),
                             ("short_concurrency_8", {"_queue": "limited"})):  # fmt: skip
            log(f"flow: {short_n} {short_s * 1000:g} ms sleeps, {key}, repeat {rep + 1}")
            runs.setdefault(key, []).append(
                drain_once(
                    url,
                    short_n,
                    8,
                    bench_tasks.sleep_sync,
                    (short_s,),
                    logdir=logdir,
                    env={"QSUP_CONFIG": config},
                    options=options,
                )  # fmt: skip
            )
    result = {key: summarise_drain(r, n if "noop" in key else short_n, 2 if "noop" in key else 8)
              for key, r in runs.items()}  # fmt: skip
    result["rate"] = bench_flow.rate_adherence(
        url, how, logdir, lambda env: Serve(url, 4, logdir=logdir, extra_env=env), enqueue_noops
    )
    return bench_flow.summarise(result)


def scenario_snapshot(dbs: Databases, rate: int, seconds: float, logdir: str) -> dict[str, Any]:
    """The long-transaction stress: the same steady rate on a fresh table, clean and then with
    a session holding a snapshot open (idle in transaction) the whole time; then, on the same
    table, how it recovers in the first ``RECOVERY_SECONDS`` after the transaction ends."""
    runs = {}
    for held in (False, True):
        url = dbs.fresh("snapshot")
        log(f"snapshot: {rate} tasks/s for {seconds:g} s, snapshot held: {held}")
        with Serve(url, 4, logdir=logdir) as serve:
            wait_ready(url, serve)
            hold = bench_steady.held_snapshot(url, SQL) if held else contextlib.nullcontext()
            with hold:
                run = bench_steady.run_rate(url, SQL, rate, seconds, serve.check)
            runs["held" if held else "clean"] = _without_samples(run)
            if held:
                log(f"snapshot: released; {RECOVERY_SECONDS:g} s more at {rate} tasks/s")
                after = bench_steady.run_rate(url, SQL, rate, RECOVERY_SECONDS, serve.check)
                runs["after_release"] = _without_samples(after)
    clean, held_run = runs["clean"]["completed_per_s"], runs["held"]["completed_per_s"]
    return {**runs, "held_vs_clean": ratio(held_run, clean), "target": "held >= 0.8 x clean"}


RECOVERY_SECONDS = 30.0  # long enough for a few hundred claims after the release


def _without_samples(run: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: v for k, v in run.items() if k != "samples"},
        "dead_at_end": run["samples"][-1].get("dead"),
    }


def scenario_edge(dbs: Databases, logdir: str) -> dict[str, Any]:
    """SPEC §13: the worker's accounting cost per task, and the rescue of a SIGKILLed
    server's running task by another (default settings: within 10 s)."""
    url = dbs.fresh("edge")
    log("edge: meter cost, then a server SIGKILLed under a running task")
    return {
        "meter": bench_edge.meter_cost(),
        "rescue_s": bench_edge.rescue_seconds(url, lambda: Serve(url, 1, logdir=logdir).start()),
        "target": "meter <= 5 us per task; rescue_s < 10",
    }


# --- 4. ceiling -----------------------------------------------------------------------------


def _ceiling_loop(url: str, limit: int, go: Any, counter: Any) -> None:
    claim, complete = SQL["ceiling_claim"], SQL["ceiling_complete"]
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SQL["remaining"])  # connected and warm before the start
        go.wait()
        while True:
            rows = conn.execute(claim, {"limit": limit}, prepare=True).fetchall()
            if not rows:
                break
            conn.execute(complete, {"ids": [r[0] for r in rows]}, prepare=True)
            done += len(rows)
    with counter.get_lock():
        counter.value += done


def ceiling_once(url: str, count: int, processes: int = 2, limit: int = 100) -> float:
    execute(url, "delete_measured")
    enqueue_noops(url, count)
    ctx = multiprocessing.get_context("fork")
    go, counter = ctx.Event(), ctx.Value("i", 0)
    procs = [
        ctx.Process(target=_ceiling_loop, args=(url, limit, go, counter)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
        STARTED[p.pid] = p
    time.sleep(0.5)  # connected and waiting
    t0 = time.monotonic()
    go.set()
    for p in procs:
        p.join(120)
        STARTED.pop(p.pid, None)
        if p.exitcode != 0:
            raise RuntimeError(f"ceiling process exited with {p.exitcode}")
    wall = time.monotonic() - t0
    if counter.value != count:
        raise RuntimeError(f"ceiling completed {counter.value} of {count}")
    return count / wall


def scenario_ceiling(dbs: Databases, quick: bool, repeats: int) -> dict[str, Any]:
    url = dbs.fresh("ceiling")
    count = 5000 if quick else 20000
    runs = []
    for rep in range(repeats):
        log(f"ceiling: {count} rows, 2 processes, batch 100, repeat {rep + 1}/{repeats}")
        runs.append(ceiling_once(url, count))
    return {"tasks": count, "processes": 2, "batch": 100, "jobs_per_s": stats(runs, 0)}


# --- 5. resources ---------------------------------------------------------------------------


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def statements_seen(conn: psycopg.Connection[Any], seconds: float) -> tuple[int, int]:
    """Statements the other sessions on this database start in ``seconds``: distinct
    ``query_start`` values, sampled every 20 ms (an idle server's statements are seconds
    apart); and how many samples that took (each one a transaction of ours). The database's
    transaction counter also counts autovacuum's visits."""

    def sample() -> set[tuple[Any, ...]]:
        return {tuple(r) for r in conn.execute(SQL["statement_starts"])}

    before = seen = sample()
    samples = 1
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(POLL)
        seen = seen | sample()
        samples += 1
    return len(seen - before), samples


def scenario_resources(dbs: Databases, quick: bool, logdir: str) -> dict[str, Any]:
    """A default server (HTTP on, a free port) that has run one task, then idles."""
    url = dbs.fresh("resources")
    window = 10.0 if quick else 30.0
    workers = 8
    with Serve(url, workers, min_workers=workers, logdir=logdir, http=True) as serve:
        wait_ready(url, serve)
        supervisor = psutil.Process(serve.pid)
        deadline = time.monotonic() + 20
        while len(supervisor.children()) < workers + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        enqueue_noops(url, 1)  # every connection a working server opens (the writer's too)
        wait_drained(url, 20, serve, stamp_first=False)
        time.sleep(2.0)  # past start-up
        children = supervisor.children()
        procs = [supervisor, *children]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SQL["clear_snapshot"])
            tx0 = conn.execute(SQL["transactions"]).fetchone()[0]
            cpu0, t0 = cpu_seconds(procs), time.monotonic()
            sup_cpu0 = cpu_seconds([supervisor])
            log(f"resources: idle server with {workers} workers for {window:g} s")
            statements, samples = statements_seen(conn, window)
            cpu1, t1 = cpu_seconds(procs), time.monotonic()
            sup_cpu1 = cpu_seconds([supervisor])
            time.sleep(1.1)  # backends flush their statistics about once a second
            conn.execute(SQL["clear_snapshot"])
            tx1 = conn.execute(SQL["transactions"]).fetchone()[0]
            # Our own reads between the two samples: the statement samples, clear_snapshot
            # and this query's transaction (autocommit: one transaction each).
            own = samples + 2
            connections = conn.execute(SQL["connections"]).fetchone()[0]
        sup_mem = supervisor.memory_full_info()
        worker_mem, http_mem = [], []
        for c in children:
            try:
                is_http = "qsup: http" in " ".join(c.cmdline())
                (http_mem if is_http else worker_mem).append(c.memory_full_info())
            except psutil.NoSuchProcess:
                pass
        minutes = (t1 - t0) / 60
        return {
            "workers": len(worker_mem),
            "window_s": round(t1 - t0, 1),
            "idle_cpu_percent_of_one_core": round((cpu1 - cpu0) / (t1 - t0) * 100, 3),
            "idle_cpu_percent_supervisor": round((sup_cpu1 - sup_cpu0) / (t1 - t0) * 100, 3),
            "supervisor_rss_mb": round(sup_mem.rss / 2**20, 1),
            "supervisor_uss_mb": round(sup_mem.uss / 2**20, 1),
            "http_rss_mb": round(http_mem[0].rss / 2**20, 1) if http_mem else None,
            "worker_rss_mb_max": round(max(m.rss for m in worker_mem) / 2**20, 1),
            "worker_uss_mb_max": round(max(m.uss for m in worker_mem) / 2**20, 1),
            "worker_uss_mb_total": round(sum(m.uss for m in worker_mem) / 2**20, 1),
            "db_connections": connections,
            "idle_statements_per_minute": round(statements / minutes, 1),
            "database_transactions_per_minute": round(max(0, tx1 - tx0 - own) / minutes, 1),
        }


# --- 6. peers -------------------------------------------------------------------------------


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def scenario_peers(dbs: Databases, quick: bool, repeats: int, logdir: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("pgqueuer", "procrastinate"):
        if not _importable(name):
            out[name] = "not installed"
            continue
        log(f"peers: {name}")
        import bench_peers  # only when a peer is there: it imports the peers' packages

        try:
            out[name] = bench_peers.run(
                name, dbs.fresh(name), quick, repeats, logdir, STARTED, stats
            )
        except Exception as exc:  # a peer's failure must not lose qsup's numbers
            log(f"{name}: {type(exc).__name__}: {exc}")
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


# --- main -----------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def summary(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Scenario, qsup number, reference number, ratio and the issue's target."""
    rows: list[dict[str, Any]] = []

    def med(*path: str) -> Any:
        node: Any = s
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node.get("median") if isinstance(node, dict) else node

    def versus(scenario: str, qsup: Any, reference: Any, reference_is: str, target: str) -> None:
        rows.append(
            {
                "scenario": scenario,
                "qsup": qsup,
                "reference": reference,
                "reference_is": reference_is,
                "ratio": ratio(qsup, reference),
                "target": target,
            }
        )

    enq = s.get("enqueue")
    if enq:
        rows.append(
            {
                "scenario": "single enqueue (tasks/s, one connection)",
                "qsup": med("enqueue", "add_task_connection"),
                "reference": med("enqueue", "bare_insert"),
                "reference_is": "bare INSERT",
                "ratio": enq["single_vs_bare_insert_slowdown"],
                "target": "bare/qsup <= 1.3",
            }
        )
        rows.append(
            {
                "scenario": "single enqueue via pool (tasks/s)",
                "qsup": med("enqueue", "add_task_pool"),
                "reference": med("enqueue", "bare_insert"),
                "reference_is": "bare INSERT",
                "ratio": enq["single_pool_vs_bare_insert_slowdown"],
                "target": "bare/qsup <= 1.3",
            }
        )
        rows.append(
            {
                "scenario": "batch enqueue 1000 (tasks/s)",
                "qsup": med("enqueue", "add_tasks_1000"),
                "reference": med("enqueue", "bare_copy_1000"),
                "reference_is": "bare COPY",
                "ratio": enq["batch_vs_bare_copy"],
                "target": ">= 1.5x pgqueuer batch (peer)",
            }
        )
    ceiling = med("ceiling", "jobs_per_s")
    for key in ("noop_workers_2", "noop_workers_4", "noop_workers_2_http"):
        if med("drain", key, "tasks_per_s"):
            versus(
                f"drain {key} (tasks/s, from process start)",
                med("drain", key, "tasks_per_s"),
                ceiling,
                "raw SKIP LOCKED ceiling",
                ">= 0.70 of ceiling, >= 2x fastest peer",
            )
            versus(
                f"drain {key} (tasks/s, steady: first start to last end)",
                med("drain", key, "steady_tasks_per_s"),
                ceiling,
                "raw SKIP LOCKED ceiling",
                ">= 0.70 of ceiling",
            )
    for group in ("drain", "targets"):
        for key, value in (s.get(group) or {}).items():
            if isinstance(value, dict) and "ideal_s" in value:
                rows.append(
                    {
                        "scenario": f"{key} (wall s)",
                        "qsup": value["wall_s"]["median"],
                        "reference": value["ideal_s"],
                        "reference_is": "ideal",
                        "ratio": value["wall_vs_ideal"],
                        "span_ratio": value["span_vs_ideal"],
                        "floor_ratio": value.get("wall_vs_floor"),
                        "steal_percent": value["steal_percent"],
                        "target": "<= 1.15 (cpu) / <= 1.2 (sleep)",
                    }
                )
    if s.get("latency"):
        for p, target in (("p50", "<= 2 ms"), ("p95", None), ("p99", "<= 10 ms")):
            rows.append(
                {
                    "scenario": f"latency commit->start {p} (ms)",
                    "qsup": med("latency", "commit_to_start", f"{p}_ms"),
                    "reference": None,
                    "ratio": None,
                    "target": target,
                }
            )
    res = s.get("resources")
    if res:
        rows += [
            {
                "scenario": "idle CPU, 8 workers (% of a core)",
                "qsup": res["idle_cpu_percent_of_one_core"],
                "target": "< 1 %",
            },
            {
                "scenario": "supervisor RSS (MB)",
                "qsup": res["supervisor_rss_mb"],
                "target": "<= 60 MB",
            },
            {"scenario": "connections per server", "qsup": res["db_connections"], "target": "<= 3"},
            {
                "scenario": "idle statements per minute",
                "qsup": res["idle_statements_per_minute"],
                "target": None,
            },
        ]
    big = s.get("big_table")
    if isinstance(big, dict) and big.get("vs_empty_table"):
        rows.append(
            {
                "scenario": "drain with 1M finished rows vs empty (ratio)",
                "qsup": med("big_table", "tasks_per_s"),
                "reference": med("drain", "noop_workers_2", "tasks_per_s"),
                "ratio": big["vs_empty_table"],
                "target": ">= 0.8",
            }
        )
    for peer in s.get("peers") or {}:
        drain = med("peers", peer, "drain", "tasks_per_s")
        if drain:
            versus(
                f"drain vs {peer} (tasks/s)",
                med("drain", "noop_workers_2", "tasks_per_s"),
                drain,
                peer,
                ">= 2",
            )
            with_http = med("drain", "noop_workers_2_http", "tasks_per_s")
            if with_http:
                versus(
                    f"drain, HTTP on, vs {peer} (tasks/s)",
                    with_http,
                    drain,
                    peer,
                    ">= 2 (the default server)",
                )
        steady = med("peers", peer, "drain", "steady_tasks_per_s")
        if steady:
            versus(
                f"drain steady vs {peer} steady (tasks/s)",
                med("drain", "noop_workers_2", "steady_tasks_per_s"),
                steady,
                f"{peer}, first pick to last end",
                ">= 2 (if timed from a running consumer)",
            )
        batch = med("peers", peer, "batch_enqueue")
        if batch:
            versus(
                f"batch enqueue vs {peer} (tasks/s)",
                med("enqueue", "add_tasks_1000"),
                batch,
                peer,
                ">= 1.5",
            )
    return rows


SCENARIOS = ("enqueue", "drain", "latency", "ceiling", "resources", "targets", "big_table", "peers",
             "steady", "snapshot", "hooks", "workflows", "flow", "edge",
             "retention", "producers", "bigtable")  # fmt: skip
QUICK = ("enqueue", "ceiling", "drain", "latency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{', '.join(QUICK)} at small counts, under a minute")  # fmt: skip
    parser.add_argument("--database-url", help="use this server instead of an embedded one")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 1 quick, 3)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument(
        "--steady-rates",
        default="100,200,500,1000,2000",
        help="offered tasks/s of the steady scenario (default %(default)s)",
    )
    parser.add_argument("--steady-seconds", type=float,
                        help="seconds per steady rate (default 10 quick, 30)")  # fmt: skip
    parser.add_argument(
        "--retention-rate",
        type=int,
        default=2000,
        help="offered tasks/s of the retention scenario (default %(default)s)",
    )
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=1800.0,
        help="its length (default %(default)s; only with --only)",
    )
    parser.add_argument("--retention-ttl", type=float, default=60.0,
                        help="its result_ttl (default %(default)s)")  # fmt: skip
    parser.add_argument("--rows", type=int, default=5_000_000,
                        help="finished tasks of bigtable (default %(default)s)")  # fmt: skip
    parser.add_argument("--drain-baseline",
                        help="src/ of another checkout: the drain scenario is then only the"
                        " no-op drain of it and of this one, alternated")  # fmt: skip
    bench_flow.add_arguments(parser)
    args = parser.parse_args(argv)
    # retention runs for half an hour: only when asked for by name
    only = set(args.only.split(",")) if args.only else set(SCENARIOS) - {"retention"}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.quick:  # the hot paths at small counts, in about a minute; --only adds others
        only = (only if args.only else set(QUICK)) - {"targets", "big_table"}
    if not args.only:
        only -= {"bigtable"}  # minutes of COPY: only when named
    repeats = args.repeats or (1 if args.quick else 3)
    try:
        rates = [int(r) for r in args.steady_rates.split(",")]
    except ValueError:
        parser.error(f"--steady-rates: not a list of integers: {args.steady_rates!r}")
    steady_seconds = args.steady_seconds or (10.0 if args.quick else 30.0)
    flow_args = bench_flow.FlowArgs(
        args.flow_baseline,
        args.flow_rate,
        args.flow_seconds or (10.0 if args.quick else 60.0),
        args.flow_task_ms / 1000,
    )
    logdir = tempfile.mkdtemp(prefix="qsup-bench-logs-")
    # SIGTERM/SIGHUP end the run through the finally below, which stops our processes.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    dbs: Databases | None = None
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        dbs = Databases(args.database_url)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("enqueue", lambda: scenario_enqueue(dbs, args.quick, repeats)),
            ("ceiling", lambda: scenario_ceiling(dbs, args.quick, repeats)),
            (
                "drain",
                lambda: scenario_drain(dbs, args.quick, repeats, logdir, args.drain_baseline),
            ),
            ("latency", lambda: scenario_latency(dbs, args.quick, max(1, repeats - 1), logdir)),
            ("resources", lambda: scenario_resources(dbs, args.quick, logdir)),
            ("targets", lambda: scenario_targets(dbs, max(1, repeats - 1), logdir)),
            (
                "big_table",
                lambda: scenario_big_table(
                    dbs,
                    1,
                    logdir,
                    (results.get("drain") or {})
                    .get("noop_workers_2", {})
                    .get("tasks_per_s", {})
                    .get("median"),
                ),
            ),
            ("peers", lambda: scenario_peers(dbs, args.quick, repeats, logdir)),
            ("steady", lambda: scenario_steady(dbs, rates, steady_seconds, logdir)),
            ("snapshot", lambda: scenario_snapshot(dbs, 500, steady_seconds, logdir)),
            ("flow", lambda: scenario_flow(dbs, args.quick, repeats, logdir, flow_args)),
            ("hooks", lambda: scenario_hooks(dbs, args.quick, repeats, logdir)),
            ("edge", lambda: scenario_edge(dbs, logdir)),
            ("workflows", lambda: scenario_workflows(dbs, args.quick, repeats, logdir)),
            ("producers", lambda: scenario_producers(dbs, args.quick, repeats)),
            (
                "retention",
                lambda: scenario_retention(
                    dbs, args.retention_rate, args.retention_seconds, args.retention_ttl, logdir
                ),
            ),
            ("bigtable", lambda: scenario_bigtable(dbs, args.rows, 20, logdir)),
        ]
        for name, step in steps:
            if name not in only:
                continue
            try:
                results[name] = step()
            except Exception as exc:  # report and go on with the other scenarios
                log(f"{name} failed: {type(exc).__name__}: {exc}")
                errors[name] = f"{type(exc).__name__}: {exc}"
            finally:
                stop_all()
    finally:
        stop_all()
        if dbs is not None:
            dbs.close()
        if not args.keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)
    doc = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "repeats": repeats,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "cpu": platform.processor() or platform.machine(),
            },
            "python": platform.python_version(),
            "postgres": dbs.version if dbs else None,
            "database": "given URL" if args.database_url else "embedded (fresh temp dir)",
            "host": conninfo_to_dict(dbs.url).get("host") if dbs else None,
            "duration_s": round(time.monotonic() - started, 1),
            "logs": logdir if args.keep_logs else None,
        },
        "summary": summary(results),
        "scenarios": results,
        "errors": errors,
    }
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
