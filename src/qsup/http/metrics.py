"""Prometheus metrics read from the database at scrape time.

The HTTP server and the workers are different processes (often different hosts), so nothing
here is a per-process counter: every value is computed from ``queued_tasks`` and
``queued_task_workers`` when Prometheus scrapes. Task run time and queue wait are gauge
histograms over the tasks finished in the last :data:`WINDOW` seconds (a sliding window, so
read them directly, e.g. ``histogram_quantile(0.95, qsup_task_duration_seconds_bucket)``,
not through ``rate()``). Worker RSS is read from the supervisor's own children (this host).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from qsup import flow_store, probes, repo
from qsup.flow import parse_rate
from qsup.http import store

if TYPE_CHECKING:
    from qsup.http.backend import Backend

WINDOW = 600.0  # seconds of finished tasks the histograms cover
MAX_ROWS = 50_000
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
MEMORY_BUCKETS = tuple(float(2**n * 2**20) for n in range(4, 15))  # 16 MB .. 16 GB
GROWTH_BUCKETS = (0.0, *(float(2**n * 2**20) for n in range(0, 13, 2)))  # 0, 1 MB .. 4 GB
SCRAPE_TIMEOUT = 5.0


def histogram(
    name: str,
    doc: str,
    label: str,
    values: dict[str, list[float]],
    bounds: tuple[float, ...] = BUCKETS,
) -> GaugeHistogramMetricFamily:
    family = GaugeHistogramMetricFamily(name, doc, labels=[label])
    for key, samples in sorted(values.items()):
        samples.sort()
        buckets = [(repr(b), float(bisect.bisect_right(samples, b))) for b in bounds]
        buckets.append(("+Inf", float(len(samples))))
        family.add_metric([key], buckets, sum(samples))
    return family


def server_gauges(servers: list[dict[str, Any]]) -> Iterator[Metric]:
    running = [s for s in servers if s["is_running"]]
    specs = (
        ("active", "active_workers", "Busy worker processes"),
        ("idle", "idle_workers", "Idle worker processes"),
        ("max", "max_workers", "Most worker processes allowed"),
    )
    for suffix, column, doc in specs:
        gauge = GaugeMetricFamily(f"qsup_workers_{suffix}", doc, labels=["server"])
        for s in running:
            gauge.add_metric([s["server_name"]], float(s[column]))
        yield gauge
    age = GaugeMetricFamily(
        "qsup_server_heartbeat_age_seconds", "Seconds since the heartbeat", labels=["server"]
    )
    for s in running:
        age.add_metric([s["server_name"]], float(s["heartbeat_age"] or 0.0))
    yield age
    yield GaugeMetricFamily("qsup_servers_running", "Servers marked running", len(running))


def server_counters(servers: list[dict[str, Any]]) -> Iterator[Metric]:
    """Each server's running totals, written by its heartbeat (so they are right whichever
    process serves /metrics). A restarted server is a new ``server`` label."""
    totals = (
        ("completed", "Tasks completed"),
        ("failed", "Tasks failed for good"),
        ("retried", "Failed attempts sent back for a retry"),
        ("claimed", "Tasks claimed"),
        ("quarantined", "Poison tasks failed for good after killing max_crashes workers"),
    )
    for key, doc in totals:
        family = CounterMetricFamily(f"qsup_tasks_{key}", doc, labels=["server"])
        for server in servers:
            family.add_metric([server["server_name"]], float(_counters(server).get(key, 0)))
        yield family
    for kind, doc in (("recycled", "Workers recycled"), ("crashed", "Workers that died")):
        family = CounterMetricFamily(f"qsup_workers_{kind}", doc, labels=["server", "reason"])
        for server in servers:
            for key, value in sorted(_counters(server).items()):
                if key.startswith(kind + ":"):
                    family.add_metric([server["server_name"], key.split(":", 1)[1]], float(value))
        yield family


def _counters(server: dict[str, Any]) -> dict[str, int]:
    counters = server.get("counters")
    return counters if isinstance(counters, dict) else {}


def worker_rss() -> GaugeMetricFamily:
    """RSS of the worker processes of the supervisor this HTTP process belongs to."""
    gauge = GaugeMetricFamily(
        "qsup_worker_rss_bytes", "Resident memory of each worker process", labels=["server", "pid"]
    )
    try:
        parent = psutil.Process(os.getppid())
        server = f"{os.uname().nodename}:{parent.pid}"
        for child in parent.children():
            if "qsup: worker" in " ".join(child.cmdline()):
                gauge.add_metric([server, str(child.pid)], float(child.memory_info().rss))
    except (psutil.Error, OSError):
        pass
    return gauge


class QueueCollector(Collector):
    """Reads the database on every scrape (through the app's pool)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("qsup_database_up", "1 when the database answered this scrape")
        try:
            metrics = list(self._from_database())
        except Exception:  # noqa: BLE001 - a scrape must still say the database is down
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        return [up, *metrics, worker_rss()]

    def _from_database(self) -> Iterator[Metric]:
        cfg = self.backend.config
        with self.backend.connection(timeout=SCRAPE_TIMEOUT) as conn:
            counts = repo.counts_by_queue_and_state(conn)
            health = store.health(conn, cfg.server_timeout, cfg.task_timeout)
            servers = store.servers(conn)
            enqueued = store.enqueued_total(conn)
            waiting = store.oldest_due(conn)
            timings = store.recent_timings(conn, WINDOW, MAX_ROWS)
            flow = flow_store.usage_report(conn)
            stranded = probes.stranded_work(conn, cfg.stranded_after, cfg.server_timeout)
        tasks = GaugeMetricFamily(
            "qsup_tasks", "Tasks by state and queue", labels=["state", "queue"]
        )
        for queue, state, n in counts:
            tasks.add_metric([state, queue], float(n))
        yield tasks
        yield GaugeMetricFamily(
            "qsup_tasks_stuck", "Tasks picked up or running past their timeout", float(health.stuck)
        )
        oldest = GaugeMetricFamily(
            "qsup_queue_oldest_due_seconds",
            "Age of the oldest due task still waiting",
            labels=["queue"],
        )
        retrying = GaugeMetricFamily(
            "qsup_tasks_retrying", "Enqueued tasks waiting for another attempt", labels=["queue"]
        )
        for queue, age, n in waiting:
            oldest.add_metric([queue], age)
            retrying.add_metric([queue], float(n))
        yield oldest
        yield retrying
        yield from server_gauges(servers)
        yield CounterMetricFamily("qsup_tasks_enqueued", "Tasks ever enqueued", enqueued)
        yield from server_counters(servers)
        yield from self._timings(timings)
        yield from flow_gauges(flow)
        yield from stranded_gauges(stranded)

    @staticmethod
    def _timings(timings: list[store.Timing]) -> Iterator[Metric]:
        durations: dict[str, list[float]] = {}
        waits: dict[str, list[float]] = {}
        usage: tuple[dict[str, list[float]], ...] = ({}, {}, {})  # CPU, peak, growth
        finished = GaugeMetricFamily(
            "qsup_tasks_finished_recent",
            f"Tasks finished in the last {int(WINDOW)} s",
            labels=["task", "state"],
        )
        by_outcome: dict[tuple[str, str], int] = {}
        for name, state, run, wait, *measured in timings:
            durations.setdefault(name, []).append(run)
            waits.setdefault(name, []).append(wait)
            for samples, value in zip(usage, measured, strict=True):
                if value is not None:
                    samples.setdefault(name, []).append(float(value))
            by_outcome[(name, state)] = by_outcome.get((name, state), 0) + 1
        for (name, state), n in sorted(by_outcome.items()):
            finished.add_metric([name, state], float(n))
        yield finished
        yield histogram(
            "qsup_task_duration_seconds",
            f"Run time of tasks finished in the last {int(WINDOW)} s",
            "task",
            durations,
        )
        yield histogram(
            "qsup_task_queue_wait_seconds",
            f"Wait from due to started, tasks finished in the last {int(WINDOW)} s",
            "task",
            waits,
        )
        recent = f"the last attempt of tasks finished in the last {int(WINDOW)} s"
        cpu, peak, growth = usage
        yield histogram("qsup_task_cpu_seconds", f"CPU seconds of {recent}", "task", cpu)
        yield histogram(
            "qsup_task_peak_memory_bytes",
            f"Peak worker RSS during {recent}",
            "task",
            peak,
            MEMORY_BUCKETS,
        )
        yield histogram(
            "qsup_task_memory_growth_bytes",
            f"Growth of the worker's own memory across {recent}",
            "task",
            growth,
            GROWTH_BUCKETS,
        )


def flow_gauges(report: list[dict[str, Any]]) -> Iterator[Metric]:
    """Paused and limited queues (``flow_store.usage_report``): the pause, each limit in force
    (a rate as starts per second), the tasks running under them, the starts in the current
    rate window and the running servers whose file disagrees with the limits in force."""
    paused = GaugeMetricFamily("qsup_queue_paused", "1 when the queue is paused", labels=["queue"])
    limit = GaugeMetricFamily(
        "qsup_queue_limit", "Flow limits in force", labels=["queue", "limit", "source"]
    )
    running = GaugeMetricFamily(
        "qsup_queue_limited_running", "Tasks running under the queue's limits", labels=["queue"]
    )
    started = GaugeMetricFamily(
        "qsup_queue_rate_window_starts", "Starts in the current rate window", labels=["queue"]
    )
    differ = GaugeMetricFamily(
        "qsup_queue_limits_file_differs",
        "Running servers whose file declares other limits for the queue than those in force",
        labels=["queue"],
    )
    for row in report:
        queue = row["queue"]
        paused.add_metric([queue], float(row["paused"]))
        for name, source in row["source"].items():
            value = row[name]
            if name == "rate":
                rate = parse_rate(value)
                value = rate.starts / rate.period
            limit.add_metric([queue, name, source], float(value))
        running.add_metric([queue], float(row["running"]))
        differ.add_metric([queue], float(len(row["file_differs"])))
        if row["rate"]:
            started.add_metric([queue], float(row["started_in_window"]))
    yield from (paused, limit, running, started, differ)


def stranded_gauges(stranded: probes.Stranded) -> Iterator[Metric]:
    """Due work no live server will run (see ``probes.stranded_work``)."""
    queues = GaugeMetricFamily(
        "qsup_queue_stranded_tasks",
        "Tasks due longer than QUEUE_STRANDED_AFTER in a queue no live server serves",
        labels=["queue"],
    )
    for queue, n in stranded.queues.items():
        queues.add_metric([queue], float(n))
    stalled = GaugeMetricFamily(
        "qsup_server_stalled",
        "1 for a live server with idle workers while due work it serves waits too long",
        labels=["server"],
    )
    for name in stranded.stalled:
        stalled.add_metric([name], 1.0)
    yield from (queues, stalled)


def make_registry(backend: Backend) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(backend))
    return registry


def metrics_endpoint(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
