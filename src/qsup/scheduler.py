"""Cron schedules: ``[[schedules]]`` in the TOML file, or :func:`schedule` in Python.

Each tick enqueues exactly one task across every server. The database enforces it: a schedule's
row holds ``next_fire`` (the first tick not yet handled) and only the caller whose
compare-and-set moves it on (``schedule_advance``) enqueues the ticks it covered, in the same
transaction; each task also carries the unique key ``schedule:<name>:<tick>``.

Ticks are computed by pure functions (``now`` is always a parameter). A tick is *missed* when it
is older than the grace period (the server timeout: every server was down). ``on_missed = "skip"``
drops missed ticks; ``"run_once"`` (the default) runs one task for them when nothing more recent
is due. A new or resumed schedule starts from the first tick after a server sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from cronsim import CronSim, CronSimError
from loguru import logger
from psycopg.rows import dict_row

from qsup import repo
from qsup.errors import ConfigError, TaskDefinitionError
from qsup.settings import Config
from qsup.sql import queries

Conn = psycopg.Connection[Any]
Q = queries()
ON_MISSED = ("skip", "run_once")
KEYS = ("name", "cron", "task", "args", "kwargs", "queue", "priority", "timezone", "on_missed")
MAX_TICKS_PER_FIRE = 1000
_TINY = timedelta(microseconds=1)


@dataclass(frozen=True)
class Schedule:
    """One validated schedule."""

    name: str
    cron: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    timezone: str = "UTC"
    on_missed: str = "run_once"
    source: str = "python"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, when: datetime) -> datetime:
        """The first tick strictly after ``when`` (an aware datetime)."""
        return next(CronSim(self.cron, when.astimezone(self.tz)))

    def latest_at_or_before(self, when: datetime) -> datetime:
        """The last tick at or before ``when``."""
        local = when.astimezone(self.tz)
        if local.microsecond == 0:
            local = local.replace(microsecond=1)
        return next(CronSim(self.cron, local, reverse=True))

    def ticks(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Ticks ``t`` with ``after < t <= until``."""
        for tick in CronSim(self.cron, after.astimezone(self.tz)):
            if tick > until:
                return
            yield tick


@dataclass(frozen=True)
class Plan:
    """What one server should do for one schedule now: enqueue ``fire``, move ``next_fire``."""

    fire: tuple[datetime, ...]
    next_fire: datetime


def plan(spec: Schedule, next_fire: datetime | None, now: datetime, grace: float) -> Plan | None:
    """Pure: the ticks due at ``now`` given the stored ``next_fire``; None when nothing to do."""
    if next_fire is None:
        return Plan((), spec.next_after(now))
    if next_fire > now:
        upcoming = spec.next_after(now)
        return Plan((), upcoming) if next_fire > upcoming else None  # the cron was changed
    horizon = now - timedelta(seconds=grace)
    start = max(next_fire - _TINY, horizon)
    recent = tuple(
        t for _, t in zip(range(MAX_TICKS_PER_FIRE), spec.ticks(start, now), strict=False)
    )
    fire = recent
    if not recent and next_fire <= horizon and spec.on_missed == "run_once":
        fire = (spec.latest_at_or_before(horizon),)
    return Plan(fire, spec.next_after(now))


# --- validation ------------------------------------------------------------------------------


def _bad(index: int, name: Any, key: str, value: Any, source: str, why: str) -> ConfigError:
    who = f"schedule {name!r}" if isinstance(name, str) and name else f"schedules[{index}]"
    return ConfigError(f"{who}: {key} = {value!r} from {source}: {why}")


def _check_cron(cron: Any, fail: Callable[[str, Any, str], ConfigError]) -> None:
    if not isinstance(cron, str):
        raise fail("cron", cron, "expected a cron expression string")
    try:
        CronSim(cron, datetime(2000, 1, 1))
    except (CronSimError, ValueError, IndexError) as exc:
        raise fail("cron", cron, f"invalid cron expression ({exc})") from None


def _check_types(raw: Mapping[str, Any], fail: Callable[[str, Any, str], ConfigError]) -> None:
    task = raw.get("task")
    if not isinstance(task, str) or ":" not in task or task.startswith(":") or task.endswith(":"):
        raise fail("task", task, "expected a task path module:function")
    if not isinstance(raw.get("args", []), list):
        raise fail("args", raw.get("args"), "expected a list")
    if not isinstance(raw.get("kwargs", {}), dict):
        raise fail("kwargs", raw.get("kwargs"), "expected a table")
    queue = raw.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise fail("queue", queue, "expected a queue name")
    priority = raw.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise fail("priority", priority, "expected an integer")
    if raw.get("on_missed", "run_once") not in ON_MISSED:
        raise fail("on_missed", raw.get("on_missed"), "expected 'skip' or 'run_once'")
    zone = raw.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise fail(
            "timezone", zone, "unknown time zone (use an IANA name like Europe/Paris)"
        ) from None


def parse_schedule(
    raw: Mapping[str, Any],
    source: str = "python",
    index: int = 0,
    key_sources: Mapping[str, str] | None = None,
) -> Schedule:
    """Validate one raw ``[[schedules]]`` table; every problem is a one-line ConfigError
    citing ``key_sources[key]`` (the key's line in the file) when known, else ``source``."""
    name = raw.get("name")

    def fail(key: str, value: Any, why: str) -> ConfigError:
        return _bad(index, name, key, value, (key_sources or {}).get(key, source), why)

    if not isinstance(raw, Mapping):
        raise _bad(index, None, "schedules", raw, source, "expected a table")
    for key in raw:
        if key not in KEYS:
            raise fail(key, raw[key], f"unknown key (known: {', '.join(KEYS)})")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", name, "every schedule needs a non-empty name")
    _check_cron(raw.get("cron"), fail)
    _check_types(raw, fail)
    return Schedule(
        name=name,
        cron=raw["cron"],
        task=raw["task"],
        args=tuple(raw.get("args", [])),
        kwargs=dict(raw.get("kwargs", {})),
        queue=raw.get("queue"),
        priority=raw.get("priority"),
        timezone=raw.get("timezone", "UTC"),
        on_missed=raw.get("on_missed", "run_once"),
        source=source,
    )


_registry: dict[str, Schedule] = {}


def registered_schedules() -> list[Schedule]:
    """The schedules registered with :func:`schedule` by the modules imported so far."""
    return list(_registry.values())


def schedule(
    name: str,
    cron: str,
    task: str | Callable[..., Any],
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timezone: str = "UTC",
    on_missed: str = "run_once",
) -> Schedule:
    """Register a schedule from Python (in a module the server imports with ``--import``)."""
    from qsup.encoding import task_path

    path = task if isinstance(task, str) else task_path(task)
    raw: dict[str, Any] = {
        "name": name,
        "cron": cron,
        "task": path,
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "timezone": timezone,
        "on_missed": on_missed,
    }
    raw |= {k: v for k, v in (("queue", queue), ("priority", priority)) if v is not None}
    spec = parse_schedule(raw, source="python")
    _registry[name] = spec
    return spec


def validate_schedules(config: Config, check_tasks: bool = False) -> list[Schedule]:
    """Every schedule of the config file and of :func:`schedule`; ConfigError on the first bad.

    ``check_tasks`` also imports each schedule's task (what a server does before it starts)."""
    found: dict[str, Schedule] = {}
    for index, raw in enumerate(config.schedules):
        source = config.sources.get(
            f"schedules[{index}]", config.sources.get("schedules", "config")
        )
        prefix = f"schedules[{index}]."
        keys = {k[len(prefix) :]: v for k, v in config.sources.items() if k.startswith(prefix)}
        spec = parse_schedule(raw, source, index, keys)
        if spec.name in found:
            raise _bad(
                index, spec.name, "name", spec.name, keys.get("name", source), "defined twice"
            )
        if check_tasks:
            _check_task(spec, keys.get("task", source))
        found[spec.name] = spec
    for name, spec in _registry.items():
        if name not in found and check_tasks:
            _check_task(spec, spec.source)
        found.setdefault(name, spec)
    return list(found.values())


def _check_task(spec: Schedule, source: str) -> None:
    from qsup.binding import check_call
    from qsup.encoding import resolve_task

    try:
        check_call(resolve_task(spec.task), spec.task, spec.args, spec.kwargs)
    except Exception as exc:  # any error in user code at import time
        why = exc if isinstance(exc, TaskDefinitionError) else f"{type(exc).__name__}: {exc}"
        raise ConfigError(
            f"schedule {spec.name!r}: task = {spec.task!r} from {source}: {why}"
        ) from None


def load_schedules(config: Config, check_tasks: bool = True) -> list[Schedule]:
    """What a server runs: the modules of ``imports`` imported first (they may register
    schedules with :func:`schedule`), then every schedule validated."""
    from qsup.encoding import import_task_modules

    import_task_modules(config)
    return validate_schedules(config, check_tasks)


def find_schedule(config: Config, name: str) -> Schedule:
    for spec in validate_schedules(config):
        if spec.name == name:
            return spec
    raise ConfigError(f"schedule {name!r}: no such schedule in the configuration")


# --- firing ----------------------------------------------------------------------------------


def build_task(config: Config, spec: Schedule, unique_key: str | None) -> repo.NewTask:
    """The row a schedule enqueues (the task's @task defaults apply)."""
    from qsup.api import Queue
    from qsup.encoding import resolve_task

    options: dict[str, Any] = {
        "_queue": spec.queue,
        "_priority": spec.priority,
        "_unique_key": unique_key,
    }
    options = {k: v for k, v in options.items() if v is not None}
    fn = resolve_task(spec.task)
    return Queue(config=config).build(fn, spec.args, {**spec.kwargs, **options})


def tick_key(name: str, tick: datetime) -> str:
    return f"schedule:{name}:{tick.isoformat()}"


def stored_state(conn: Conn, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    conn.execute(Q["schedule_ensure"], {"names": list(names)})
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(Q["schedule_rows"], {"names": list(names)}).fetchall()
    return {row["name"]: row for row in rows}


def _apply(
    conn: Conn,
    config: Config,
    spec: Schedule,
    expected: datetime | None,
    todo: Plan,
    channel: str | None,
) -> list[uuid.UUID]:
    """Move next_fire on (compare-and-set) and enqueue the planned ticks, atomically."""
    rows = [build_task(config, spec, tick_key(spec.name, t)) for t in todo.fire]
    fired = todo.fire[-1] if todo.fire else None
    params = {"name": spec.name, "expected": expected, "next_fire": todo.next_fire, "fired": fired}
    ids: list[uuid.UUID] = []
    with conn.transaction():
        if conn.execute(Q["schedule_advance"], params).fetchone() is None:
            return []  # another server handled these ticks, or the schedule was paused
        for row in rows:
            inserted = repo.insert_task(conn, row, channel)
            if inserted:
                ids.append(inserted[0])
    return ids


def fire_due(
    conn: Conn, config: Config, specs: Sequence[Schedule], now: datetime, channel: str | None
) -> list[uuid.UUID]:
    """Enqueue the due ticks of the ``specs`` not paused; returns the ids enqueued here.

    Safe to call from any number of servers at once: each tick is enqueued exactly once.
    """
    if not specs:
        return []
    state = stored_state(conn, [s.name for s in specs])
    enqueued: list[uuid.UUID] = []
    for spec in specs:
        row = state.get(spec.name)
        if row is None or row["paused"]:
            continue
        todo = plan(spec, row["next_fire"], now, config.server_timeout)
        if todo is None:
            continue
        try:
            ids = _apply(conn, config, spec, row["next_fire"], todo, channel)
        except Exception as exc:  # noqa: BLE001 - one bad schedule must not stop the others
            logger.error("schedule {}: cannot enqueue {}: {}", spec.name, spec.task, exc)
            continue
        for task_id in ids:
            logger.info("schedule {} enqueued task {}", spec.name, task_id)
        enqueued.extend(ids)
    return enqueued


def enqueue_run(
    conn: Conn, name: str, row: repo.NewTask, now: datetime, channel: str | None
) -> uuid.UUID:
    """Insert a run of schedule ``name`` and record it as its last run, atomically."""
    with conn.transaction():
        inserted = repo.insert_task(conn, row, channel)
        conn.execute(Q["schedule_mark_run"], {"name": name, "fired": now})
    assert inserted is not None
    return inserted[0]
