"""Every setting is declared once, here, as a field of :class:`Config`.

The field's metadata (env names, CLI flag, bounds, doc) is the table that the loader, the CLI,
``qsup config show`` and ``config/queue.toml`` derive from. Precedence, lowest first:
defaults < TOML file < environment < CLI flags. Each value remembers where it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from qsup.errors import ConfigError

_MISSING = dataclasses.MISSING
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
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


def _cpu_count() -> int:
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
    data_dir: str | None = setting(
        None, env="QSUP_DATA_DIR", doc="Data directory of the embedded PostgreSQL server"
    )
    max_workers: int = setting(
        default_factory=_cpu_count,
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
        doc="Retire a worker whose RSS passes this after a task (0: never)",
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
    max_logs_per_task: int = setting(
        1000,
        env="QUEUE_MAX_LOGS_PER_TASK",
        min=1,
        doc="Most current_task.log() rows one attempt may write; later ones are dropped",
    )
    allowed_task_modules: list[str] = setting(
        default_factory=list,
        env="QUEUE_ALLOWED_TASK_MODULES",
        doc="If set, workers run only tasks from these modules (and their submodules)",
    )
    worker_init: str | None = setting(
        None,
        env="QUEUE_WORKER_INIT",
        doc="Function (module:name) each worker calls after the fork, before its first task:"
        " workers close every inherited file descriptor, so reopen here what a task module"
        " opened at import (files, sockets, exporters' threads)",
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
_BY_NAME = {f.name: f for f in SETTINGS}
_TYPES = get_type_hints(Config)


def setting_type(name: str) -> type:
    """The base type of a setting (``int``, ``float``, ``bool``, ``str`` or ``list``)."""
    hint = _TYPES[name]
    for base in (bool, int, float, list, str):
        if hint is base or base.__name__ in str(hint).split(" | ")[0]:
            return base
    raise AssertionError(f"unsupported setting type {hint}")


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not _MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


_TEXT_PARSERS: dict[type, tuple[Any, str]] = {
    int: (int, "an integer"),
    float: (float, "a number"),
}


def _coerce(name: str, value: Any, source: str, from_text: bool) -> Any:
    """A raw value (env/flag text, or a TOML value) as the setting's type, or a ConfigError
    naming the key, the value and its source."""
    kind = setting_type(name)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{name}: invalid value {value!r} from {source}: expected {expected}")

    if "None" in str(_TYPES[name]) and (value is None or str(value).strip() == ""):
        return None
    if from_text:
        return _from_text(kind, str(value).strip(), bad)
    return _from_toml(kind, value, bad)


def _from_text(kind: type, text: str, bad: Any) -> Any:
    if kind is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise bad("a boolean (true/false, 1/0, yes/no, on/off)")
    if kind in _TEXT_PARSERS:
        parse, expected = _TEXT_PARSERS[kind]
        try:
            number = parse(text)
        except ValueError:
            raise bad(expected) from None
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if kind is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _from_toml(kind: type, value: Any, bad: Any) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is bool and not isinstance(value, bool):
        raise bad("a boolean")
    if kind is int and not (is_number and isinstance(value, int)):
        raise bad("an integer")
    if kind is float:
        if not is_number:
            raise bad("a number")
        if not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if kind is list and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise bad("a list of strings")
    if kind is str and not isinstance(value, str):
        raise bad("a string")
    return list(value) if kind is list else value


def _check_bounds(name: str, value: Any, source: str) -> None:
    meta = _BY_NAME[name].metadata
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    low, high = meta["min"], meta["max"]
    if low is not None and value < low:
        raise ConfigError(f"{name}: value {value!r} from {source} is below the minimum {low}")
    if high is not None and value > high:
        raise ConfigError(f"{name}: value {value!r} from {source} is above the maximum {high}")


def _unknown_key(key: str, source: str) -> ConfigError:
    hint = difflib.get_close_matches(key, [*_BY_NAME, "schedules"], n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{key}: unknown setting in {source}{suggestion}")


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"^[ \t]*{re.escape(key)}[ \t]*=", text, flags=re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


_TABLE = re.compile(r"^[ \t]*\[", re.MULTILINE)
_KEY = re.compile(r"^[ \t]*([A-Za-z_][\w-]*)[ \t]*=", re.MULTILINE)


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _schedule_sources(path: Path, text: str, count: int) -> dict[str, str]:
    """``schedules[i]`` -> ``file PATH:LINE`` of the i-th ``[[schedules]]`` header, and
    ``schedules[i].KEY`` -> the line of each key of that table (errors cite the bad key)."""
    heads = [
        m.start()
        for m in re.finditer(r"^[ \t]*\[\[[ \t]*schedules[ \t]*\]\]", text, flags=re.MULTILINE)
    ]
    found = {"schedules": f"file {path}"}
    for index in range(count):
        if index >= len(heads):
            found[f"schedules[{index}]"] = f"file {path}"
            continue
        start = heads[index]
        following = _TABLE.search(text, start + 1)
        end = following.start() if following else len(text)
        found[f"schedules[{index}]"] = f"file {path}:{_line_at(text, start)}"
        for key in _KEY.finditer(text, start, end):
            where = f"file {path}:{_line_at(text, key.start())}"
            found.setdefault(f"schedules[{index}].{key.group(1)}", where)
    return found


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; errors become one-line ConfigErrors with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        last = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        where = str(exc).replace("at end of document", f"at end of document, line {last}")
        raise ConfigError(f"config file {path}: malformed TOML: {where}") from None


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """``--config``, else ``QSUP_CONFIG``, else ``./config/queue.toml`` if present."""
    if explicit:
        return Path(explicit)
    if environ.get("QSUP_CONFIG"):
        return Path(environ["QSUP_CONFIG"])
    default = Path("config/queue.toml")
    return default if default.is_file() else None


Layer = dict[str, tuple[Any, str]]  # setting name -> (value, source)


def _file_layer(path: Path) -> tuple[Layer, list[Any], dict[str, str]]:
    """Settings of a TOML file, its ``[[schedules]]`` and where each schedule is."""
    data, text = read_toml(path)
    layer: Layer = {}
    for key, raw in data.items():
        if key == "schedules":
            continue
        line = _line_of(text, key)
        source = f"file {path}:{line}" if line else f"file {path}"
        if key not in _BY_NAME:
            raise _unknown_key(key, source)
        layer[key] = (_coerce(key, raw, source, from_text=False), source)
    schedules = data.get("schedules", [])
    if not isinstance(schedules, list) or not all(isinstance(s, dict) for s in schedules):
        raise ConfigError(f"schedules: expected [[schedules]] tables in config file {path}")
    return layer, schedules, _schedule_sources(path, text, len(schedules)) if schedules else {}


def _env_layer(environ: Mapping[str, str]) -> Layer:
    layer: Layer = {}
    for f in SETTINGS:
        env_name = next((e for e in f.metadata["env"] if e in environ), None)
        if env_name is not None:
            source = f"env {env_name}"
            layer[f.name] = (_coerce(f.name, environ[env_name], source, from_text=True), source)
    return layer


def _flag_layer(flags: Mapping[str, Any]) -> Layer:
    layer: Layer = {}
    for name, value in flags.items():
        if value is not None:
            source = f"flag {_BY_NAME[name].metadata['flag'] or name}"
            layer[name] = (_coerce(name, value, source, from_text=isinstance(value, str)), source)
    return layer


def load_config(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Layer defaults < TOML < environment < flags into a frozen :class:`Config`."""
    environ = os.environ if environ is None else environ
    path = find_config_file(config_file, environ)
    file_layer, schedules, schedule_sources = _file_layer(path) if path else ({}, [], {})
    merged = file_layer | _env_layer(environ) | _flag_layer(flags or {})
    for name, (value, source) in merged.items():
        _check_bounds(name, value, source)
    sources = {f.name: "default" for f in SETTINGS}
    sources.update({name: source for name, (_, source) in merged.items()})
    sources.update(schedule_sources)
    values = {name: value for name, (value, _) in merged.items()}
    return Config(**values, schedules=tuple(schedules), sources=sources)


def display_value(name: str, value: Any) -> str:
    """How ``config show`` prints a value (secrets masked)."""
    if value is not None and _BY_NAME[name].metadata["secret"]:
        return "********"
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


def _toml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


_SCHEDULE_EXAMPLE = """\
# Cron schedules: each tick enqueues exactly one task across all servers.
# cron has 5 fields (minute hour day month weekday) or 6 (a seconds field first).
# on_missed: "run_once" (default) runs one task for ticks missed while every server was down;
# "skip" drops them. timezone is an IANA name (default UTC).
#
# [[schedules]]
# name = "nightly-report"
# cron = "0 3 * * *"
# task = "myapp.tasks:nightly_report"
# args = []
# kwargs = {}
# queue = "default"
# priority = 0
# timezone = "UTC"
# on_missed = "run_once"
"""


def example_toml() -> str:
    """The commented example config: every key at its default (``config/queue.toml``)."""
    out = [
        "# qsup configuration. Every key is shown at its default; uncomment to change it.",
        "# Precedence: command-line flag > environment variable > this file > default.",
        "# Generated by qsup.settings.example_toml() (qsup config example).",
        "",
    ]
    for f in SETTINGS:
        meta = f.metadata
        where = [f"env {', '.join(meta['env'])}"] if meta["env"] else []
        where += [f"flag {meta['flag']}"] if meta["flag"] else []
        out.append(f"# {meta['doc']}" + (f" [{'; '.join(where)}]" if where else ""))
        if f.default_factory is _cpu_count:  # type: ignore[comparison-overlap]
            out.append(f"# {f.name} = 4  # default: the number of CPUs")
        else:
            out.append(f"# {f.name} = {_toml_value(default_of(f))}")
        out.append("")
    return "\n".join(out) + _SCHEDULE_EXAMPLE
