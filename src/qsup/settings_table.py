"""Every setting is declared once, here, as a field of :class:`Config`.

The field's metadata (env names, CLI flag, bounds, doc) is the table that the loader
(:mod:`qsup.settings`), the CLI options, ``qsup config show`` and ``config/queue.toml`` derive
from.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from qsup.errors import ConfigError
from qsup.flow import Limits

_MISSING = dataclasses.MISSING
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


def setting(
    default: Any = _MISSING,
    *,
    doc: str,
    env: str | tuple[str, ...] = (),
    flag: str | None = None,
    min: float | None = None,  # noqa: A002 - reads best at the call sites
    max: float | None = None,  # noqa: A002
    default_factory: Any = _MISSING,
    secret: bool = False,
) -> Any:
    """Declare one setting: a dataclass field whose metadata drives loading and docs."""
    envs = (env,) if isinstance(env, str) else env
    meta = {"doc": doc, "env": envs, "flag": flag, "min": min, "max": max, "secret": secret}
    if default_factory is not _MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    """Effective configuration. ``sources`` maps each setting to where its value came from."""

    database_url: str | None = setting(
        None,
        env=("QUEUE_DATABASE_URL", "DATABASE_URL"),
        flag="--database-url",
        doc="PostgreSQL URL; unset means the embedded server in data_dir",
        secret=True,
    )
    listen_database_url: str | None = setting(
        None,
        env="QUEUE_LISTEN_DATABASE_URL",
        secret=True,
        doc="Direct PostgreSQL URL for LISTEN when database_url goes through PgBouncer"
        " in transaction mode (default: database_url)",
    )
    prepared_statements: bool = setting(
        True,
        env="QUEUE_PREPARED_STATEMENTS",
        doc="Server-side prepared statements (no parse and plan per claim); false behind a pooler"
        " in transaction mode that cannot keep them (PgBouncer before 1.21, or without"
        " max_prepared_statements)",
    )
    data_dir: str | None = setting(
        None, env="QSUP_DATA_DIR", doc="Data directory of the embedded PostgreSQL server"
    )
    max_workers: int = setting(
        default_factory=cpu_count,
        env="QUEUE_MAX_WORKERS",
        flag="--workers",
        min=1,
        max=1024,
        doc="Most worker processes per server (default: CPU count)",
    )
    min_workers: int = setting(
        1,
        env="QUEUE_MIN_WORKERS",
        flag="--min-workers",
        min=0,
        max=1024,
        doc="Fewest worker processes kept alive while idle",
    )
    worker_idle_timeout: float = setting(
        60.0,
        env="QUEUE_WORKER_IDLE_TIMEOUT",
        min=0,
        doc="Seconds a worker may stay idle before it is retired (down to min_workers)",
    )
    polling_interval: float = setting(
        2.0,
        env="QUEUE_POLLING_INTERVAL",
        min=0.01,
        doc="Seconds between polls when NOTIFY is off",
    )
    fallback_polling_interval: float = setting(
        30.0,
        env="QUEUE_FALLBACK_POLLING_INTERVAL",
        min=0.1,
        doc="Seconds between safety-net polls when NOTIFY is on",
    )
    task_timeout: float = setting(
        300.0, env="QUEUE_TASK_TIMEOUT", min=0.001, doc="Default seconds a task may run"
    )
    timeout_grace: float = setting(
        5.0,
        env="QUEUE_TIMEOUT_GRACE",
        min=0,
        doc="Seconds a timed-out task gets to stop before its worker is killed",
    )
    max_retries: int = setting(
        3, env="QUEUE_MAX_RETRIES", min=0, max=1000, doc="Default retries after a failed attempt"
    )
    retry_backoff_base: float = setting(
        1.0,
        env="QUEUE_RETRY_BACKOFF_BASE",
        min=0,
        doc="Seconds before the first retry; doubles each attempt, with jitter",
    )
    retry_backoff_max: float = setting(
        300.0, env="QUEUE_RETRY_BACKOFF_MAX", min=0, doc="Longest wait between retries, seconds"
    )
    use_postgresql_notify: bool = setting(
        True, env="QUEUE_USE_POSTGRESQL_NOTIFY", doc="Wake servers with LISTEN/NOTIFY"
    )
    notify_channel: str = setting(
        "queue_new_task", env="QUEUE_NOTIFY_CHANNEL", doc="PostgreSQL NOTIFY channel"
    )
    queues: list[str] = setting(
        default_factory=list,
        env="QUEUE_QUEUES",
        flag="--queues",
        doc="Queues this server takes (empty: all)",
    )
    imports: list[str] = setting(
        default_factory=list,
        env="QUEUE_IMPORTS",
        flag="--import",
        doc="Modules imported by the supervisor before forking workers",
    )
    claim_batch_size: int = setting(
        500,
        env="QUEUE_CLAIM_BATCH_SIZE",
        min=1,
        max=10000,
        doc="Most tasks claimed in one query",
    )
    max_tasks_per_worker: int = setting(
        0,
        env="QUEUE_MAX_TASKS_PER_WORKER",
        min=0,
        doc="Retire a worker after this many tasks (0: never)",
    )
    max_worker_memory_mb: int = setting(
        0,
        env="QUEUE_MAX_WORKER_MEMORY_MB",
        min=0,
        doc="Retire a worker whose own (unique) memory passes this after a task (0: never)",
    )
    worker_memory_limit_mb: int = setting(
        0,
        env="QUEUE_WORKER_MEMORY_LIMIT_MB",
        min=0,
        doc="Kill a worker whose own memory passes this while it runs a task; the attempt"
        " fails with MemoryLimitExceeded and counts as a crash (0: no limit)",
    )
    max_crashes: int = setting(
        2,
        env="QUEUE_MAX_CRASHES",
        min=0,
        doc="Quarantine (fail for good) a task whose attempts killed this many workers, or"
        " that this many dead servers held before its start was written (0: never)",
    )
    shutdown_timeout: float = setting(
        30.0,
        env="QUEUE_SHUTDOWN_TIMEOUT",
        min=0,
        doc="Seconds running tasks get to finish on SIGTERM before they are requeued",
    )
    heartbeat_interval: float = setting(
        30.0,
        env="QUEUE_HEARTBEAT_INTERVAL",
        min=0.1,
        doc="Seconds between server heartbeats (each also checks for due tasks)",
    )
    server_timeout: float = setting(
        90.0,
        env="QUEUE_SERVER_TIMEOUT",
        min=1,
        doc="A server silent this long is presumed dead and its tasks are rescued",
    )
    stranded_after: float = setting(
        60.0,
        env="QUEUE_STRANDED_AFTER",
        min=0.1,
        doc="Due tasks waiting this long in a queue no live server serves, or while a server"
        " serving them has idle workers, make health degraded with a WARNING; a server whose"
        " claims stall this long reconnects",
    )
    result_ttl: float = setting(
        7 * 24 * 3600.0,
        env="QUEUE_RESULT_TTL",
        min=0,
        doc="Seconds finished tasks and their logs are kept",
    )
    max_args_bytes: int = setting(
        1_000_000, env="QUEUE_MAX_ARGS_BYTES", min=1, doc="Largest encoded task arguments"
    )
    max_result_bytes: int = setting(
        1_000_000,
        env="QUEUE_MAX_RESULT_BYTES",
        min=1,
        doc="Largest encoded task result; a larger one fails the task",
    )
    max_workflow_steps: int = setting(
        10_000,
        env="QUEUE_MAX_WORKFLOW_STEPS",
        min=1,
        doc="Most steps (compensations included) one workflow may have",
    )
    max_logs_per_task: int = setting(
        1000,
        env="QUEUE_MAX_LOGS_PER_TASK",
        min=1,
        doc="Most current_task.log() rows one attempt may write; later ones are dropped",
    )
    allowed_task_modules: list[str] = setting(
        default_factory=list,
        env="QUEUE_ALLOWED_TASK_MODULES",
        doc="Modules (and their submodules) whose functions workers run; empty: the server's"
        " own (imports, the package of --app, the schedules' modules and the @task functions"
        " they register); * runs any importable function. Others fail with TaskNotAllowed,"
        " unimported",
    )
    worker_init: str | None = setting(
        None,
        env="QUEUE_WORKER_INIT",
        doc="Function (module:name) each worker calls after the fork, before its first task:"
        " workers close every inherited file descriptor, so reopen here what a task module"
        " opened at import (files, sockets, exporters' threads, an OpenTelemetry SDK)",
    )
    django: str | None = setting(
        None,
        env="DJANGO_SETTINGS_MODULE",
        flag="--django",
        doc="Django settings module: serve sets Django up before forking, imports every app's"
        " tasks module, and gives the ORM fresh connections around each task",
    )
    middleware: list[str] = setting(
        default_factory=list,
        env="QUEUE_MIDDLEWARE",
        doc="Middleware classes or objects (module:name), outermost first, with hooks around"
        " every task: on_enqueue, before_task, after_task, on_failure, on_retry, around_task,"
        " on_worker_died",
    )
    otel: bool = setting(
        False,
        env="QUEUE_OTEL",
        doc="OpenTelemetry spans: a producer span at enqueue, a consumer span per attempt"
        " (needs opentelemetry-api: pip install 'qsup[otel]')",
    )
    http: bool = setting(True, env="QSUP_HTTP", doc="Serve the HTTP API and dashboard")
    host: str = setting("127.0.0.1", env="QSUP_HOST", flag="--host", doc="HTTP bind address")
    port: int = setting(8000, env="QSUP_PORT", flag="--port", min=0, max=65535, doc="HTTP port")
    app: str | None = setting(
        None, env="QSUP_APP", flag="--app", doc="Your ASGI app (module:attr) served beside qsup"
    )
    http_prefix: str = setting(
        "/qsup",
        env="QSUP_HTTP_PREFIX",
        doc="Path prefix of qsup's routes when --app serves your ASGI app at /",
    )
    admin_token: str | None = setting(
        None, env="QSUP_ADMIN_TOKEN", doc="Bearer token for HTTP mutations", secret=True
    )
    protect_reads: bool = setting(
        False,
        env="QSUP_PROTECT_READS",
        doc="Require the admin token for HTTP reads too (all but /livez and /health/queue)",
    )
    log_level: str = setting("INFO", env="QSUP_LOG_LEVEL", doc="Log level")
    log_format: str = setting("text", env="QSUP_LOG_FORMAT", doc="Log format: text or json")
    schedules: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)
    limits: Mapping[str, Limits] = field(default_factory=dict, compare=False, repr=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.min_workers > self.max_workers:
            raise ConfigError(
                f"min_workers={self.min_workers} ({self.sources.get('min_workers', 'default')})"
                f" is greater than max_workers={self.max_workers}"
                f" ({self.sources.get('max_workers', 'default')})"
            )
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"log_level={self.log_level!r} ({self.sources.get('log_level')}):"
                f" expected one of {', '.join(LOG_LEVELS)}"
            )
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", self.http_prefix):
            raise ConfigError(
                f"http_prefix={self.http_prefix!r} ({self.sources.get('http_prefix')}):"
                " expected a path like /qsup (no trailing slash)"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(
                f"log_format={self.log_format!r} ({self.sources.get('log_format')}):"
                " expected 'text' or 'json'"
            )

    @property
    def wake_channel(self) -> str | None:
        """The NOTIFY channel to wake servers on, or None when NOTIFY is off."""
        return self.notify_channel if self.use_postgresql_notify else None

    def replace(self, **changes: Any) -> Config:
        """A copy with some values changed (sources say ``runtime``)."""
        sources = dict(self.sources) | {name: "runtime" for name in changes}
        return dataclasses.replace(self, sources=sources, **changes)


SETTINGS: tuple[dataclasses.Field[Any], ...] = tuple(
    f for f in dataclasses.fields(Config) if "doc" in f.metadata
)
BY_NAME = {f.name: f for f in SETTINGS}
TYPES = get_type_hints(Config)


def setting_type(name: str) -> type:
    """The base type of a setting (``int``, ``float``, ``bool``, ``str`` or ``list``)."""
    hint = TYPES[name]
    for base in (bool, int, float, list, str):
        if hint is base or base.__name__ in str(hint).split(" | ")[0]:
            return base
    raise AssertionError(f"unsupported setting type {hint}")


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not _MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default
