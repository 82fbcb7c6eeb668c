"""Prometheus metrics read from the database at scrape time.

The HTTP server and the workers are different processes (often different hosts), so nothing
here is a per-process counter: every value is read from the database when Prometheus scrapes.
Task counts are exact up to a cap per state and estimated beyond (``qsup_tasks_estimated``,
see qsup.counts). Task run time, queue wait and CPU are gauge histograms over the tasks
finished in the minutes of the last :data:`WINDOW` seconds, read from the per-minute series
the servers write (qsup.series; a sliding window, so read them directly, e.g.
``histogram_quantile(0.95, qsup_task_duration_seconds_bucket)``, not through ``rate()``).
Worker RSS is read from the supervisor's own children (this host).
"""

from __future__ import annotations

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

from qsup import counts, flow_store, probes, series
from qsup.flow import parse_rate
from qsup.http import store

if TYPE_CHECKING:
    from qsup.http.backend import Backend

WINDOW = 600  # seconds of finished tasks the histograms cover (whole minutes)
# Every other bucket of the series' digests: 1 ms, 2 ms, 4 ms ... 4194 s (qsup.series).
BUCKETS = tuple(range(0, series.BUCKETS - 1, 2))
SCRAPE_TIMEOUT = 5.0


def histogram(name: str, doc: str, tasks: list[dict[str, Any]], key: str) -> Metric:
    """A gauge histogram per task name from the series' ``{key}_buckets`` digests and
    ``{key}_seconds`` sums."""
    family = GaugeHistogramMetricFamily(name, doc, labels=["task"])
    for task in tasks:
        digest = task[f"{key}_buckets"]
        buckets = [(repr(series.upper_bound(b)), float(sum(digest[: b + 1]))) for b in BUCKETS]
        buckets.append(("+Inf", float(sum(digest))))
        family.add_metric([task["name"]], buckets, float(task[f"{key}_seconds"]))
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
            found = counts.task_counts(conn)
            health = store.health(conn, cfg.server_timeout, cfg.task_timeout)
            servers = store.servers(conn)
            enqueued = store.enqueued_total(conn)
            waiting = store.oldest_due(conn)
            recent = series.by_task(conn, WINDOW)
            flow = flow_store.usage_report(conn)
            stranded = probes.stranded_work(conn, cfg.stranded_after, cfg.server_timeout)
        tasks = GaugeMetricFamily(
            "qsup_tasks", "Tasks by state and queue", labels=["state", "queue"]
        )
        estimated = GaugeMetricFamily(
            "qsup_tasks_estimated",
            "1 when qsup_tasks of this state and queue is the planner's estimate",
            labels=["state", "queue"],
        )
        for c in found:
            tasks.add_metric([c.state, c.queue], float(c.n))
            estimated.add_metric([c.state, c.queue], float(c.estimated))
        yield tasks
        yield estimated
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
        yield from self._timings(recent)
        yield from flow_gauges(flow)
        yield from stranded_gauges(stranded)

    @staticmethod
    def _timings(tasks: list[dict[str, Any]]) -> Iterator[Metric]:
        recent = f"tasks finished in the last {WINDOW // 60} minutes and this one"
        finished = GaugeMetricFamily(
            "qsup_tasks_finished_recent", f"Outcomes of {recent}", labels=["task", "state"]
        )
        peak = GaugeMetricFamily(
            "qsup_task_peak_memory_bytes", f"Highest worker RSS during {recent}", labels=["task"]
        )
        growth = GaugeMetricFamily(
            "qsup_task_memory_growth_bytes",
            f"Average growth of the worker's own memory per attempt, {recent}",
            labels=["task"],
        )
        for task in tasks:
            for state in ("completed", "failed", "retried"):
                finished.add_metric([task["name"], state], float(task[state]))
            if task["measured"]:
                peak.add_metric([task["name"]], float(task["peak_memory_bytes"] or 0))
                growth.add_metric([task["name"]], task["memory_growth_bytes"] / task["measured"])
        yield finished
        yield histogram("qsup_task_duration_seconds", f"Run time of {recent}", tasks, "run")
        yield histogram(
            "qsup_task_queue_wait_seconds", f"Wait from due to started, {recent}", tasks, "wait"
        )
        yield histogram(
            "qsup_task_cpu_seconds", f"CPU seconds of attempts of {recent}", tasks, "cpu"
        )
        yield from (peak, growth)


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
